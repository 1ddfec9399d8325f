"""The statistics every verdict uses: means and seed sds, Welch tests and intervals, BH correction.

Why one module: harness-compare (variant vs baseline), the guided-vs-random verdict and the growth
workflow judge the same kind of data (one value per training seed, 2-5 seeds per arm). Written twice,
the two answers drifted (an exact permutation p of 1/3 in one place, 0.0 in the other, for the same two
constant arms), so now the same data gives the same p everywhere. scipy does the tests; only the cases
scipy leaves undefined are decided here:

* fewer than 2 values in an arm: no p (and no interval);
* both arms constant and equal: no p (nothing varies; shown as "identical in every run");
* both arms constant and different (Welch's t is undefined, zero variance): the exact two-sided
  permutation p of :func:`separated_p` (1/3 for 2 vs 2 seeds), never 0. With every value tied inside
  its arm only the observed split reaches the observed difference, so this is the smallest p a
  permutation test can give at these sizes, and a discrete metric that ties by chance at 2 seeds is not
  flagged. The interval is then the single point (diff, diff).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def describe(values: Sequence[float]) -> tuple[int, float | None, float | None]:
    """(n, mean, sample sd with ddof=1); sd None below 2 values, mean None for none."""
    n = len(values)
    if n == 0:
        return 0, None, None
    return n, float(np.mean(values)), (float(np.std(values, ddof=1)) if n > 1 else None)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample sd) of a non-empty sequence; sd 0.0 for a single value (error bars of one seed)."""
    _, mean, sd = describe(values)
    if mean is None:
        raise ValueError("mean_sd of no values")
    return mean, (sd or 0.0)


def pooled_sd(n1: int, sd1: float | None, n2: int, sd2: float | None) -> float | None:
    """sqrt(((n1-1) s1² + (n2-1) s2²) / (n1+n2-2)); None without a degree of freedom."""
    dof = n1 + n2 - 2
    if n1 < 1 or n2 < 1 or dof < 1:
        return None
    return math.sqrt(((n1 - 1) * (sd1 or 0.0) ** 2 + (n2 - 1) * (sd2 or 0.0) ** 2) / dof)


def separated_p(n_base: int, n_variant: int) -> float:
    """Exact two-sided permutation p when each side is constant and the sides differ.

    Welch is undefined there (zero variance). With every value tied inside its group, only the observed
    split (and its mirror, for equal group sizes) reaches the observed |difference of means|, so
    p = (2 if n_base == n_variant else 1) / C(n_base + n_variant, n_base): 1/3 for 2 vs 2 seeds, 0.1 for
    3 vs 3, 0.008 for 5 vs 5. Discrete metrics that tie by chance at 2 seeds are therefore not flagged.
    """
    return (2 if n_base == n_variant else 1) / math.comb(n_base + n_variant, n_base)


def constant_arms(a: Sequence[float], b: Sequence[float]) -> bool:
    """Both arms without any spread (every value tied inside its arm)."""
    return len(set(a)) == 1 and len(set(b)) == 1


def _welch_parts(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(mean(a) - mean(b), its standard error, Welch-Satterthwaite degrees of freedom): scipy's Welch t-test by
    hand, a hundred times faster than `stats.ttest_ind` (harness-compare runs thousands of them per A/A check)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = vx + vy
    with np.errstate(all="ignore"):
        dof = se2**2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return float(x.mean() - y.mean()), math.sqrt(se2), float(dof)


def welch_p(base: Sequence[float], variant: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p; None with fewer than 2 values on a side or identical constants.

    Both sides constant but different: the exact permutation p of `separated_p` instead.
    """
    if len(base) < 2 or len(variant) < 2:
        return None
    if constant_arms(base, variant):
        return None if base[0] == variant[0] else separated_p(len(base), len(variant))
    diff, se, dof = _welch_parts(variant, base)
    p = float(2 * stats.t.sf(abs(diff) / se, dof)) if se > 0 else math.nan
    return p if math.isfinite(p) else None


def welch(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, tuple[float, float] | None, float | None]:
    """(mean(a) - mean(b), its `level` Welch interval, two-sided p as in :func:`welch_p`).

    Interval and p are None where an arm has fewer than 2 values; constant arms get the point interval.
    """
    diff = float(np.mean(a)) - float(np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    if constant_arms(a, b):  # no spread at all: the t statistic is undefined
        return diff, (diff, diff), welch_p(a, b)
    diff, se, dof = _welch_parts(a, b)
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return diff, (diff - half, diff + half), welch_p(a, b)


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q); a metric is beyond noise when q <= alpha."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(np.asarray(p_values, dtype=float), method="bh")]


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, sd) of paired differences with a two-sided t interval; low/high/sd are nan below two.

    Why here: the oracle's gains (candidate - control per seed) and harness-compare's paired verdict
    (policy - baseline per seed) are the same computation on the same kind of data.
    """
    x = np.asarray(diffs, dtype=float)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), math.nan, math.nan, math.nan
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return mean, mean - half, mean + half, sd
