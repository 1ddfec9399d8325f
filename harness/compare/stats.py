"""Per-metric effects of a variant against the baseline, judged against seed-to-seed noise.

Why these statistics: seeds are few (2-5), so each metric gets the plain difference of means, a
standardised effect (difference / pooled seed sd, i.e. Cohen's d), and a Welch t-test (scipy: no equal
variance assumption, since a wider layer can change the spread). One variant is tested on hundreds of
probe metrics at once, so p-values are Benjamini-Hochberg corrected per variant before a difference is
called "beyond seed noise".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch

import numpy as np
from scipy import stats

from harness.compare.load import Run

ALPHA = 0.05
# Bookkeeping, not results: listed in summary.csv, never tested.
NOT_RESULTS = ("lr-*", "epoch", "step", "*/seconds", "perf/*", "*/failed")


def is_result(metric: str) -> bool:
    """True for metrics that say something about the model (see NOT_RESULTS)."""
    return not any(fnmatch(metric, pattern) for pattern in NOT_RESULTS)


@dataclass
class Effect:
    """One metric of one variant against the baseline; None fields are shown as empty cells.

    Usage: ``e = metric_effect("val/acc", [0.5, 0.52], [0.6, 0.61]); e.effect, e.p``
    """

    metric: str
    n_base: int
    n_variant: int
    base_mean: float | None
    base_sd: float | None
    variant_mean: float | None
    variant_sd: float | None
    diff: float | None
    effect: float | None  # diff / pooled seed sd
    p: float | None  # Welch t-test
    q: float | None = None  # Benjamini-Hochberg adjusted p
    beyond_noise: bool | None = None
    note: str = ""


def _describe(values: Sequence[float]) -> tuple[int, float | None, float | None]:
    n = len(values)
    if n == 0:
        return 0, None, None
    return n, float(np.mean(values)), (float(np.std(values, ddof=1)) if n > 1 else None)


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


def welch_p(base: Sequence[float], variant: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p; None with fewer than 2 values on a side or identical constants.

    Both sides constant but different: the exact permutation p of `separated_p` instead.
    """
    if len(base) < 2 or len(variant) < 2:
        return None
    if len(set(base)) == 1 and len(set(variant)) == 1:
        return None if base[0] == variant[0] else separated_p(len(base), len(variant))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(stats.ttest_ind(base, variant, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q); a metric is beyond noise when q <= alpha."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(np.asarray(p_values, dtype=float), method="bh")]


def metric_effect(metric: str, base: Sequence[float], variant: Sequence[float]) -> Effect:
    """Means, sds, difference, standardised effect and Welch p of one metric (values already without None)."""
    nb, mb, sb = _describe(base)
    nv, mv, sv = _describe(variant)
    note = ""
    if nb == 0 or nv == 0:
        side = "baseline" if nb == 0 else "variant"
        return Effect(metric, nb, nv, mb, sb, mv, sv, None, None, None, note=f"missing in {side}")
    diff = mv - mb
    pooled = pooled_sd(nb, sb, nv, sv)
    if pooled is None:
        effect = None
    elif pooled == 0:
        effect = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        effect = diff / pooled
    p = welch_p(base, variant)
    if nb < 2 or nv < 2:
        note = "fewer than 2 seeds on a side: no p-value"
    elif len(set(base)) == 1 and len(set(variant)) == 1:
        note = "identical in every run" if diff == 0 else "no seed variation: exact permutation p"
    return Effect(metric, nb, nv, mb, sb, mv, sv, diff, effect, p, note=note)


def _values(runs: Sequence[Run], metric: str) -> list[float]:
    return [v for run in runs if (v := run.metrics.get(metric)) is not None and math.isfinite(v)]


def variant_effects(base_runs: Sequence[Run], variant_runs: Sequence[Run], alpha: float = ALPHA) -> list[Effect]:
    """Every result metric of either side, BH-corrected across this variant's tested metrics."""
    metrics = dict.fromkeys(m for run in [*base_runs, *variant_runs] for m in run.metrics if is_result(m))
    effects = [metric_effect(m, _values(base_runs, m), _values(variant_runs, m)) for m in metrics]
    tested = [e for e in effects if e.p is not None]
    for e, q in zip(tested, bh_adjust([e.p for e in tested])):
        e.q = q
        e.beyond_noise = q <= alpha
    return effects


def by_effect_size(effects: Sequence[Effect]) -> list[Effect]:
    """Largest |effect| first; metrics without an effect size last (by |diff|)."""

    def key(e: Effect) -> tuple[int, float]:
        if e.effect is not None:
            return (0, -abs(e.effect))
        return (1, -abs(e.diff) if e.diff is not None else 0.0)

    return sorted(effects, key=key)
