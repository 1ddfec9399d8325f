"""Oracle gains: what each candidate buys over the no-edit control, paired by seed.

Why paired: a seed fixes the batch order (and the fresh units' draws), so candidate and control of one
seed see the same data in the same order, and their difference removes most of the seed-to-seed noise.
gain_val_loss = control val loss - candidate val loss (> 0: the candidate helps), gain_val_acc = candidate
val acc - control val acc; mean and 95% t interval of the paired differences (scipy's t quantile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.facts.stats import paired_interval
from harness.oracle.candidates import CONTROL
from harness.oracle.launch import JobResult

LEVEL = 0.95


@dataclass(frozen=True)
class Gain:
    """Mean and 95% CI of paired differences; ``low``/``high`` are nan with fewer than two seeds."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(diffs: Sequence[float], level: float = LEVEL) -> Gain:
    """Mean and two-sided t interval of ``diffs`` (:func:`harness.facts.stats.paired_interval`)."""
    mean, low, high, _ = paired_interval(diffs, level)
    return Gain(mean, low, high, len(diffs))


def paired_diffs(jobs: Sequence[JobResult]) -> dict[str, dict[str, np.ndarray]]:
    """candidate -> {"val_loss": control - candidate, "val_acc": candidate - control} per seed both finished."""
    control = {j.seed: j for j in jobs if j.candidate == CONTROL}
    by_cand: dict[str, list[JobResult]] = {}
    for j in jobs:
        if j.candidate != CONTROL and j.seed in control:
            by_cand.setdefault(j.candidate, []).append(j)
    out = {}
    for name, runs in by_cand.items():
        runs = sorted(runs, key=lambda j: j.seed)
        out[name] = {
            "val_loss": np.array([control[j.seed].val_loss - j.val_loss for j in runs]),
            "val_acc": np.array([j.val_acc - control[j.seed].val_acc for j in runs]),
        }
    return out


def gains(diffs: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Gain]]:
    """candidate -> {"val_loss": Gain, "val_acc": Gain}."""
    return {name: {k: t_interval(v) for k, v in d.items()} for name, d in diffs.items()}
