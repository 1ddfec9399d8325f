"""Probe overhead: a short run with `probes=none` against the same run with `probes=default`.

Why: probes run at the end of every training run (cheap ones every few epochs); their cost must stay
small next to training, and the per-probe seconds (from the run's record.json) show which to tune.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from training import run_harness


def probe_benchmark(overrides: list[str], probe_settings: list[str] = ()) -> dict[str, Any]:
    """Wall seconds of `train(cfg)` with each probe setting; per-probe seconds from the probed run's record.

    `probe_settings` (e.g. `probes.featvis.steps=4`) only exist when probes are on, so only that run gets them.
    """
    common = ["trainer.enable_progress_bar=false", "test=false", *overrides]
    with tempfile.TemporaryDirectory(prefix="bench_probes_") as tmp:
        _, none_s = run_harness(["probes=none", *common], Path(tmp) / "none")
        _, default_s = run_harness(["probes=default", *common, *probe_settings], Path(tmp) / "default")
        record = json.loads((Path(tmp) / "default" / "record.json").read_text())
    probes = record.get("probes", {})
    return {
        "probe_overrides": common,
        "probe_settings": list(probe_settings),
        "run_seconds_probes_none": none_s,
        "run_seconds_probes_default": default_s,
        "probe_overhead_ratio": default_s / none_s,
        "probe_seconds": {name: float(entry.get("seconds") or 0.0) for name, entry in probes.items()},
        "probe_skipped": [name for name, entry in probes.items() if entry.get("skipped")],
        "probe_errors": {name: entry["error"] for name, entry in probes.items() if entry.get("error")},
        "probe_seconds_total": float(record.get("probe_seconds", 0.0)),
    }
