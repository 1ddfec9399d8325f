"""How many seeds an observed effect would need: power said plainly in the headline.

Why: "0 findings" from 3 seeds per arm is not "no effect"; it may be a design that cannot resolve effects of the
size seen. For each family metric not resolved, the seeds per arm at which the same effect at the same spread
would reach the threshold the best metric of the family must pass (alpha / family size, BH's first step):
* Welch metrics: the expected t of a standardised effect d at n seeds per arm is d * sqrt(n / 2) on 2n - 2
  degrees of freedom (two arms without spread: the exact permutation p of n vs n seeds instead);
* counts: the quasi-binomial F statistic grows in proportion to the seeds (same rates, same dispersion).
"At the observed spread" is a point estimate: an effect measured on 3 seeds is uncertain, so the number is a
planning guide (about even odds of resolving it), not a guarantee.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from harness.facts.stats import separated_p

MAX_SEEDS = 64  # beyond this per arm the headline says "more than 64"


_N = np.arange(2, MAX_SEEDS + 1)  # candidate seeds per arm


def _first(p: np.ndarray, threshold: float) -> int | None:
    hits = np.flatnonzero(p <= threshold)
    return int(_N[hits[0]]) if len(hits) else None


def seeds_for_effect(effect: float | None, threshold: float) -> int | None:
    """Smallest seeds per arm (2..MAX_SEEDS) whose expected Welch/permutation p reaches `threshold`; None if never."""
    if effect is None or effect == 0 or math.isnan(effect):
        return None
    if math.isinf(effect):
        return _first(np.array([separated_p(n, n) for n in _N]), threshold)
    return _first(2 * stats.t.sf(abs(effect) * np.sqrt(_N / 2), 2 * _N - 2), threshold)


def seeds_for_count(f_stat: float | None, seeds_per_arm: float, threshold: float) -> int | None:
    """Smallest seeds per arm at which the count test's F (scaled with the seeds) reaches `threshold`."""
    if not f_stat or math.isnan(f_stat) or seeds_per_arm <= 0:
        return None
    return _first(stats.f.sf(f_stat * _N / seeds_per_arm, 1, 2 * _N - 2), threshold)


def power_text(n_base: int, n_variant: int, metric: str, needed: int | None) -> str:
    """The headline's sentence for the family metric closest to being resolved."""
    design = f"{n_base} vs {n_variant} seeds cannot resolve an effect the size of {metric}'s"
    if needed is None:
        return f"{design}; not even {MAX_SEEDS} seeds per arm would, at the observed spread"
    return f"{design}; seed=range({needed}) would, at the observed spread"
