"""Per-metric effects of a variant against the baseline, judged against seed-to-seed noise.

Why these statistics: seeds are few (2-5), so each metric gets the plain difference of means, a
standardised effect (difference / pooled seed sd, i.e. Cohen's d), an interval, and a test: Welch's t-test
(scipy: no equal variance assumption, since a wider layer can change the spread), or for counts of units
(detectors, dead units, concept units: k of N per run) the quasi-binomial test of :mod:`harness.compare.counts`.
Config facts (:mod:`harness.compare.family`) are never tested. Benjamini-Hochberg runs within the experiment's
headline family only; every other metric is exploratory: effect and interval, never "beyond seed noise".
The Welch tests themselves live in :mod:`harness.facts.stats` (shared with every verdict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch

from harness.compare.counts import as_count, count_interval, count_test
from harness.compare.family import is_fact
from harness.compare.load import Run
from harness.compare.power import seeds_for_count, seeds_for_effect
from harness.facts import keys as pk
from harness.facts.stats import bh_adjust, constant_arms, describe, pooled_sd, welch, welch_p

ALPHA = 0.05
FACT, FAMILY, EXPLORATORY = "fact", "family", "exploratory"  # Effect.role
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
    role: str = FAMILY  # fact (never tested), family (BH within the headline family) or exploratory
    test: str = "welch"  # welch, or count (quasi-binomial over the units of every seed)
    ci: tuple[float, float] | None = None  # 95% interval of diff
    seeds_needed: int | None = None  # seeds per arm at which this effect would reach the family's first BH step
    stat: float | None = None  # the count test's F (scales with the seeds, for `seeds_needed`)


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


def _counts(runs: Sequence[Run], metric: str) -> list[tuple[float, float]] | None:
    """(k, N) per run with a value, or None when any run lacks its layer's unit count (then Welch)."""
    out = []
    for run in runs:
        value = run.metrics.get(metric)
        if value is None or not math.isfinite(value):
            continue
        count = as_count(metric, value, run.channels)
        if count is None:
            return None
        out.append(count)
    return out


def judged_effect(metric: str, base_runs: Sequence[Run], variant_runs: Sequence[Run]) -> Effect:
    """`metric_effect` plus the role-free parts of the verdict: count test where it applies, interval, facts."""
    e = metric_effect(metric, _values(base_runs, metric), _values(variant_runs, metric))
    if e.diff is None or e.note == "identical in every run":
        if is_fact(metric):
            e.role = FACT
        return e
    if is_fact(metric):
        e.p, e.role, e.note = None, FACT, "config fact: reported, never tested"
        return e
    base, variant = _counts(base_runs, metric), _counts(variant_runs, metric)
    if base is not None and variant is not None and e.n_base >= 2 and e.n_variant >= 2:
        e.test = "count"
        e.p, e.stat, dispersion = count_test(base, variant)
        e.ci = count_interval(base, variant, dispersion)
        e.note = f"count of units (k of N per seed), dispersion {dispersion:.2g}" if e.p is not None else e.note
    elif e.n_base >= 2 and e.n_variant >= 2:
        vb, vv = _values(base_runs, metric), _values(variant_runs, metric)
        e.ci = welch(vv, vb)[1]
    return e


def variant_effects(
    base_runs: Sequence[Run],
    variant_runs: Sequence[Run],
    alpha: float = ALPHA,
    family: set[str] | None = None,
) -> list[Effect]:
    """Every result metric of either side; BH across `family` (None: every tested metric), the rest exploratory."""
    metrics = dict.fromkeys(m for run in [*base_runs, *variant_runs] for m in run.metrics if is_result(m))
    effects = [judged_effect(m, base_runs, variant_runs) for m in metrics]
    for e in effects:
        if e.role != FACT and family is not None and e.metric not in family:
            e.role = EXPLORATORY
            if e.diff is not None:
                e.note = "; ".join(filter(None, ["exploratory (not in the headline family)", e.note]))
    tested = [e for e in effects if e.p is not None and e.role == FAMILY]
    for e, q in zip(tested, bh_adjust([e.p for e in tested])):
        e.q = q
        e.beyond_noise = q <= alpha
    threshold = alpha / max(len(tested), 1)  # what the family's best metric must reach (BH's first step)
    for e in tested:
        if not e.beyond_noise:
            per_arm = (e.n_base + e.n_variant) / 2
            needed = (seeds_for_count(e.stat, per_arm, threshold) if e.test == "count"
                      else seeds_for_effect(e.effect, threshold))  # fmt: skip
            # the expected p at today's seeds can pass where the observed one did not (Welch's degrees of
            # freedom fall below 2n - 2 when the arms' spreads differ): a design that just failed needs more seeds
            e.seeds_needed = None if needed is None else max(needed, max(e.n_base, e.n_variant) + 1)
    return effects


def by_effect_size(effects: Sequence[Effect]) -> list[Effect]:
    """Largest |effect| first; metrics without an effect size last (by |diff|)."""

    def key(e: Effect) -> tuple[int, float]:
        if e.effect is not None:
            return (0, -abs(e.effect))
        return (1, -abs(e.diff) if e.diff is not None else 0.0)

    return sorted(effects, key=key)
