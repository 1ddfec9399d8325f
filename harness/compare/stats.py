"""Per-metric effects of a variant against the baseline, judged against seed-to-seed noise.

Why these statistics: seeds are few (2-5), so each metric gets the plain difference of means, a
standardised effect (difference / pooled seed sd, i.e. Cohen's d), and a Welch t-test (scipy: no equal
variance assumption, since a wider layer can change the spread). One variant is tested on hundreds of
probe metrics at once, so p-values are Benjamini-Hochberg corrected per variant before a difference is
called "beyond seed noise". The tests themselves live in :mod:`harness.stats` (shared with every verdict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch

from harness.compare.load import Run
from harness.probes import keys as pk
from harness.stats import bh_adjust, constant_arms, describe, pooled_sd, welch_p

ALPHA = 0.05
# Bookkeeping, not results: listed in summary.csv, never tested.
NOT_RESULTS = ("lr-*", "epoch", "step", f"*/{pk.SECONDS}", "perf/*", f"*/{pk.FAILED}")


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


def metric_effect(metric: str, base: Sequence[float], variant: Sequence[float]) -> Effect:
    """Means, sds, difference, standardised effect and Welch p of one metric (values already without None)."""
    nb, mb, sb = describe(base)
    nv, mv, sv = describe(variant)
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
    elif constant_arms(base, variant):
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
