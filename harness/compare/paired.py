"""Paired differences: when variants share seeds, compare them seed by seed.

Why next to the Welch statistics (kept as they are): in a paired design (the grow loop, the oracle) one
seed fixes the base model and the batch order of every arm, so most seed-to-seed noise is common to both
sides and cancels in the per-seed difference. A t interval on those differences is then much narrower than
the unpaired Welch interval on the same runs. Used only where it is valid: each seed appears once per
side, and at least two seeds are shared.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.compare.load import Run, ordered_variants
from harness.facts import keys
from harness.facts.stats import paired_interval

PAIRED_METRICS = (keys.TEST_ACC, keys.TEST_LOSS, keys.VAL_ACC, keys.VAL_LOSS)
LEVEL = 0.95
COLUMNS = ("variant", "baseline", "metric", "n_pairs", "mean_diff", "low", "high", "sd_diff")


@dataclass(frozen=True)
class PairedEffect:
    """variant - baseline of one metric over shared seeds: mean, 95% t interval, sd of the differences."""

    variant: str
    baseline: str
    metric: str
    n_pairs: int
    mean_diff: float
    low: float
    high: float
    sd_diff: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _by_seed(runs: Sequence[Run], variant: str) -> dict[int, Run] | None:
    """seed -> run for one variant's finished runs; None when a seed repeats (pairing would be ambiguous)."""
    out: dict[int, Run] = {}
    for run in runs:
        if run.finished and run.variant == variant and run.seed is not None:
            if run.seed in out:
                return None
            out[run.seed] = run
    return out


def paired_effects(runs: Sequence[Run], baseline: str, metrics: Sequence[str] = PAIRED_METRICS) -> list[PairedEffect]:
    """Every other variant - ``baseline`` per metric over the seeds both finished (>= 2 shared seeds)."""
    base = _by_seed(runs, baseline)
    if not base:
        return []
    out = []
    for variant in ordered_variants(runs):
        other = _by_seed(runs, variant) if variant != baseline else None
        if not other:
            continue
        for metric in metrics:
            diffs = []
            for seed in sorted(set(base) & set(other)):
                a, b = other[seed].metrics.get(metric), base[seed].metrics.get(metric)
                if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
                    diffs.append(a - b)
            if len(diffs) >= 2:
                out.append(PairedEffect(variant, baseline, metric, len(diffs), *paired_interval(diffs)))
    return out


def lines(effects: Sequence[PairedEffect], labels: dict[str, str]) -> list[str]:
    """Headline lines: one per variant and metric."""
    return [f"paired by seed ({e.n_pairs} seeds): {labels.get(e.variant, e.variant)} - "
            f"{labels.get(e.baseline, e.baseline)} {e.metric} = {e.mean_diff:+.4f} "
            f"(95% CI {e.low:+.4f} .. {e.high:+.4f}, sd of differences {e.sd_diff:.4f})"
            for e in effects]  # fmt: skip


def write_paired(effects: Sequence[PairedEffect], labels: dict[str, str], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for e in effects:
            writer.writerow({**asdict(e), "variant": labels.get(e.variant, e.variant),
                             "baseline": labels.get(e.baseline, e.baseline)})  # fmt: skip
