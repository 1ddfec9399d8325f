"""Run every harness benchmark in sequence, print a table and write one JSON file.

Why one entry point: the numbers are only comparable when taken together on the same machine and
load; the JSON keeps the raw numbers next to the headline ratios (see benchmarks/README.md).

Usage: python benchmarks/run.py [--quick] [--out benchmarks/results/latest.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

# This checkout's harness (not whichever one pip's editable install points at), then the sibling modules.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import data_benchmark  # noqa: E402
from probe_scaling import probe_scaling_benchmark  # noqa: E402
from probes import probe_benchmark  # noqa: E402
from roofline import roofline_benchmark  # noqa: E402
from training import training_benchmark  # noqa: E402

import harness  # noqa: E402

# Sizes: full takes ~8-9 minutes on 2 cores (it runs the default experiment twice) plus the probe scaling
# study (its own sizes, see probe_scaling.py); quick is a smoke test whose numbers mean little.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "steps": 150, "repeats": 9, "naive_steps": 40, "precision_steps": 24, "budget_steps": 100, "val_size": 1024,
        "gen_n": 4096, "wait_steps": 100,
        "matmul_n": 2048, "matmul_reps": 5,
        "probe_overrides": [],  # the default experiment itself: the target is stated for it
        "probe_settings": [],
    },
    "quick": {
        "steps": 3, "repeats": 1, "naive_steps": 2, "precision_steps": 2, "budget_steps": 2, "val_size": 64,
        "gen_n": 64, "wait_steps": 3,
        "matmul_n": 512, "matmul_reps": 2,
        "probe_overrides": ["trainer.max_epochs=1", "data.train_size=128", "data.val_size=64", "data.test_size=64",
                            "data.batch_size=64", "probing.probe_set_size=64"],
        "probe_settings": ["probes.featvis.steps=4", "probes.curves.orientations=36"],
    },
}

HEADLINES = [
    ("train_ratio_vs_plain", "harness / plain loop images/s (same settings)", ">= 0.97"),
    ("default_speedup_vs_naive", "harness default / naive loop images/s", ">= 1.4"),
    ("data_wait_fraction", "share of a step waiting for its batch", "< 0.05"),
    ("probe_overhead_ratio", "run wall time probes=default / probes=none", "< 1.15"),
    ("bf16_speedup", "bf16 autocast / fp32 (both channels_last)", "info"),
    ("peak_fraction", "training FLOP/s / fp32 matmul peak", "info"),
    ("probe_full224_max_seconds", "slowest probe (or the shared capture), full InceptionV1 at 224 px", "< 60"),
    ("cka_4096x1024_seconds", "linear_cka on two 4096 x 1024 activation matrices", "< 1"),
]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(),
            "harness": str(Path(harness.__file__).parent)}


def run_all(quick: bool) -> dict[str, Any]:
    """All benchmarks in sequence; the headline keys sit at the top level of the result."""
    size = SIZES["quick" if quick else "full"]
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": "quick" if quick else "full", "date": datetime.now(timezone.utc).isoformat(),
                              "machine": machine(), "sizes": size}
    train = training_benchmark(size["steps"], size["naive_steps"], size["precision_steps"], size["repeats"],
                               size["budget_steps"], size["val_size"])
    data = data_benchmark(size["gen_n"], size["wait_steps"], train["harness_images_per_s_median"])
    probes = probe_benchmark(size["probe_overrides"], size["probe_settings"])
    roof = roofline_benchmark(train["harness_images_per_s_median"], size["matmul_n"], size["matmul_reps"])
    scaling = probe_scaling_benchmark(quick)  # sizes of its own (probe_scaling.SIZES), fresh worker processes
    result["raw"] = {"training": train, "data": data, "probes": probes, "roofline": roof}
    result["probe_scaling"] = scaling
    for part in (train, data, probes, roof, scaling):
        result.update({k: v for k, v in part.items() if k in dict.fromkeys(k for k, _, _ in HEADLINES)})
    result["probe_seconds"] = probes["probe_seconds"]
    result["bf16_supported"] = train["bf16_supported"]
    result["precision_accuracy"] = train["precision_accuracy"]
    result["total_seconds"] = time.perf_counter() - started
    return result


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"harness benchmarks ({result['mode']}, {result['machine']['cpu']}, "
                        f"{result['machine']['threads']} threads)")
    for col in ("metric", "value", "target", "meaning"):
        table.add_column(col)
    for key, meaning, target in HEADLINES:
        table.add_row(key, f"{result[key]:.3f}", target, meaning)
    raw = result["raw"]
    extra = [
        ("plain img/s (median)", raw["training"]["plain_images_per_s_median"]),
        ("harness img/s (median)", raw["training"]["harness_images_per_s_median"]),
        ("plain + train metrics img/s", raw["training"]["plain_metrics_images_per_s"]),
        ("naive img/s", raw["training"]["naive_images_per_s"]),
        *((f"{k} img/s", v) for k, v in raw["training"]["precision_images_per_s"].items()),
        *((f"{k} val acc after {raw['training']['precision_budget']['budget_steps']} steps", v)
          for k, v in raw["training"]["precision_accuracy"].items()),
        *((f"{k} s for those steps", v) for k, v in raw["training"]["precision_budget"]["budget_seconds"].items()),
        ("world gen img/s (64 px)", raw["data"]["generation_images_per_s"]),
        ("world gen + masks img/s", raw["data"]["generation_masks_images_per_s"]),
        ("matmul peak GFLOP/s", raw["roofline"]["matmul_peak_gflops"]),
        ("train GFLOP/image", raw["roofline"]["train_flops_per_image"] / 1e9),
        *((f"probe {k} s", v) for k, v in result["probe_seconds"].items()),
        *((f"full IV1 {result['probe_scaling']['full_inception']['image_size']}px {k} s", v)
          for k, v in result["probe_scaling"]["full_inception_224_seconds"].items()),
    ]
    for name, value in extra:
        table.add_row(name, f"{value:.3f}", "", "")
    table.add_row("bf16_supported", str(result["bf16_supported"]), "", "oneDNN bf16 kernels on this CPU")
    table.add_row("total_seconds", f"{result['total_seconds']:.1f}", "", "")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes: a few steps, tiny data (< 60 s)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"))
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    result = run_all(args.quick)
    bad = [k for k, _, _ in HEADLINES if not math.isfinite(result[k])]
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    if bad:
        raise SystemExit(f"non-finite results: {bad}")


if __name__ == "__main__":
    main()
