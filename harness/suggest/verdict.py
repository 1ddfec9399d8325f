"""Does following the suggestions beat random edits? The statistics behind the guided-vs-random verdict.

Why Welch: the two arms are separate samples over training seeds with possibly different spread (a
random edit can hurt badly or not at all), so neither equal variances nor a normal approximation with a
handful of seeds is safe. The difference guided - random of final test accuracy gets a Welch t interval
(Welch-Satterthwaite degrees of freedom) and Welch's two-sided p. Both arms start each seed from the
same base model, so the paired mean difference per seed is reported as well. An interval containing
zero is an honest null, not a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Verdict:
    """guided - random in final test accuracy, with its uncertainty and a one-line conclusion."""

    diff: float
    ci: tuple[float, float] | None
    p: float | None
    n_guided: int
    n_random: int
    paired_diff: float | None
    text: str


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _var(xs: Sequence[float]) -> float:
    m = _mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def welch(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, tuple[float, float] | None, float | None]:
    """(mean(a) - mean(b), its `level` Welch interval, two-sided Welch p); None where n < 2 in an arm."""
    from scipy import stats

    diff = _mean(a) - _mean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    if _var(a) == 0 and _var(b) == 0:  # no spread at all: scipy's t is undefined
        return diff, (diff, diff), (1.0 if diff == 0 else 0.0)
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(level)
    return diff, (float(ci.low), float(ci.high)), float(result.pvalue)


def compare(guided: Sequence[float], random: Sequence[float], paired: Sequence[tuple[float, float]] = ()) -> Verdict:
    """The verdict on final test accuracies of the guided and random arms (one value per seed)."""
    diff, ci, p = welch(guided, random)
    paired_diff = _mean([g - r for g, r in paired]) if paired else None
    head = f"guided - random final test acc = {diff:+.4f}"
    if ci is None:
        text = f"{head}; too few seeds for an interval (need >= 2 per arm): no verdict"
    else:
        detail = (
            f"{head} (95% CI {ci[0]:+.4f} .. {ci[1]:+.4f}, Welch p = {p:.3g}, {len(guided)} vs {len(random)} seeds)"
        )
        if ci[0] > 0:
            text = f"guided beats random: {detail}"
        elif ci[1] < 0:
            text = f"random beats guided: {detail}"
        else:
            text = f"no detectable difference (the interval contains 0): {detail}"
    return Verdict(diff, ci, p, len(guided), len(random), paired_diff, text)
