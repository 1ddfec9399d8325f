"""Does following the suggestions beat random edits? The statistics behind the guided-vs-random verdict.

Why Welch: the two arms are separate samples over training seeds with possibly different spread (a
random edit can hurt badly or not at all), so neither equal variances nor a normal approximation with a
handful of seeds is safe. The difference guided - random of final test accuracy gets a Welch t interval
(Welch-Satterthwaite degrees of freedom) and Welch's two-sided p. Both arms start each seed from the
same base model, so the paired mean difference per seed is reported as well. An interval containing
zero is an honest null, not a failure. The test is :func:`harness.facts.stats.welch`, the one every verdict
uses: two constant arms that differ get the exact permutation p (1/3 for 2 vs 2 seeds), as in harness-compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.facts.stats import welch


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


def judge(guided: Sequence[float], random: Sequence[float], paired: Sequence[tuple[float, float]] = ()) -> Verdict:
    """The verdict on final test accuracies of the guided and random arms (one value per seed)."""
    diff, ci, p = welch(guided, random)
    paired_diff = sum(g - r for g, r in paired) / len(paired) if paired else None
    head = f"guided - random final test acc = {diff:+.4f}"
    if ci is None:
        text = f"{head}; too few seeds for an interval (need >= 2 per arm): no verdict"
    else:
        shown_p = "n/a" if p is None else f"{p:.3g}"
        seeds = f"{len(guided)} vs {len(random)} seeds"
        detail = f"{head} (95% CI {ci[0]:+.4f} .. {ci[1]:+.4f}, Welch p = {shown_p}, {seeds})"
        if ci[0] > 0:
            text = f"guided beats random: {detail}"
        elif ci[1] < 0:
            text = f"random beats guided: {detail}"
        else:
            text = f"no detectable difference (the interval contains 0): {detail}"
    return Verdict(diff, ci, p, len(guided), len(random), paired_diff, text)
