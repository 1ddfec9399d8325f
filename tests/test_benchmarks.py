"""Smoke test of the benchmark suite: `benchmarks/run.py --quick` runs and writes every headline key.

Why no timing assertions: CI machines differ and are shared; the numbers are for people to read
(benchmarks/README.md), the test only guards that the scripts keep working as the harness changes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = [
    "train_ratio_vs_plain",
    "default_speedup_vs_naive",
    "data_wait_fraction",
    "probe_overhead_ratio",
    "bf16_speedup",
    "peak_fraction",
    "probe_full224_max_seconds",
    "cka_4096x1024_seconds",
]


def test_quick_benchmarks_write_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HARNESS_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    for key in KEYS:
        assert math.isfinite(result[key]), key
    assert result["probe_seconds"] and all(math.isfinite(v) for v in result["probe_seconds"].values())
    assert {"cpu", "torch", "threads"} <= set(result["machine"])
    assert isinstance(result["bf16_supported"], bool)
    assert result["raw"]["training"]["harness_images_per_s"]
    precisions = {"fp32_contiguous", "fp32_channels_last", "bf16_channels_last"}
    assert set(result["precision_accuracy"]) == precisions  # accuracy after a fixed step budget, per precision
    assert all(0.0 <= v <= 1.0 for v in result["precision_accuracy"].values())
    assert set(result["raw"]["training"]["precision_budget"]["budget_seconds"]) == precisions

    scaling = result["probe_scaling"]  # probe seconds per grid point, growth exponents, the full InceptionV1
    probes = set(scaling["probes"])
    assert {"capture", "activations", "curves", "cka", "featvis", "ablation"} <= probes
    assert not scaling["errors"], scaling["errors"]
    for point in scaling["grid"]:
        assert set(point["seconds"]) == probes and all(math.isfinite(v) for v in point["seconds"].values())
        assert all(math.isfinite(v) and v >= 0 for v in point["peak_mb"].values())
    assert all(math.isfinite(v) for fit in scaling["exponents"].values() for v in (fit["channels"], fit["pixels"]))
    assert set(scaling["full_inception_224_seconds"]) == probes
    assert all(math.isfinite(v) for v in scaling["full_inception_224_seconds"].values())
    assert scaling["cka_4096x1024_seconds"] == result["cka_4096x1024_seconds"]
