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
]


def test_quick_benchmarks_write_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HARNESS_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    for key in KEYS:
        assert math.isfinite(result[key]), key
    assert result["probe_seconds"] and all(math.isfinite(v) for v in result["probe_seconds"].values())
    assert {"cpu", "torch", "threads"} <= set(result["machine"])
    assert isinstance(result["bf16_supported"], bool)
    assert result["raw"]["training"]["harness_images_per_s"]
