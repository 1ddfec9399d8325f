"""summary.csv (one row per run) and effects.csv (one row per variant x metric).

Why CSV: it opens in a spreadsheet and in pandas without this package; missing values are empty cells
(never 0), so a metric a run did not log cannot be mistaken for a measured zero.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.compare.load import Run
from harness.compare.stats import Effect, by_effect_size

RUN_COLUMNS = ["run_dir", "status", "variant", "label", "seed", "wall_seconds", "error"]
EFFECT_COLUMNS = [
    "variant", "label", "baseline", "metric", "n_baseline", "n_variant", "baseline_mean", "baseline_sd",
    "variant_mean", "variant_sd", "diff", "effect_size", "p", "q_bh", "beyond_noise", "note",
    "role", "test", "ci_low", "ci_high", "seeds_needed_per_arm",
]  # fmt: skip


def cell(value: Any) -> str:
    """CSV text: empty for missing, full precision for floats, 'inf' for infinite effect sizes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def metric_columns(runs: Sequence[Run]) -> list[str]:
    """Every metric of any run, in order of first appearance (train/val, test, then probes)."""
    return list(dict.fromkeys(m for run in runs for m in run.metrics))


def write_summary(runs: Sequence[Run], labels: Mapping[str, str], path: Path) -> Path:
    """One row per run, failed and running ones included, with every metric as a column."""
    metrics = metric_columns(runs)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RUN_COLUMNS + metrics)
        for run in runs:
            ident = [run.run_dir, run.status, run.variant, labels.get(run.variant, run.variant), run.seed,
                     run.wall_seconds, run.error]  # fmt: skip
            writer.writerow([cell(v) for v in ident] + [cell(run.metrics.get(m)) for m in metrics])
    return path


def effect_row(variant: str, label: str, baseline: str, e: Effect) -> list[Any]:
    """The EFFECT_COLUMNS values of one effect."""
    return [variant, label, baseline, e.metric, e.n_base, e.n_variant, e.base_mean, e.base_sd, e.variant_mean,
            e.variant_sd, e.diff, e.effect, e.p, e.q, e.beyond_noise, e.note, e.role, e.test,
            *(e.ci or (None, None)), e.seeds_needed]  # fmt: skip


def write_effects(
    effects: Mapping[str, Sequence[Effect]], labels: Mapping[str, str], baseline: str, path: Path
) -> Path:
    """Per variant, every metric against the baseline, largest |effect size| first."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(EFFECT_COLUMNS)
        for variant, rows in effects.items():
            for e in by_effect_size(rows):
                writer.writerow([cell(v) for v in effect_row(variant, labels[variant], baseline, e)])
    return path
