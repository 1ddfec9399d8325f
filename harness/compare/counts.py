"""Counts of units (k of a layer's N units per run) tested as counts: a quasi-binomial model across seeds.

Why: a detector count is k of N units in each seed. Tested as one scalar per seed, two arms without spread
(0 curve detectors in every baseline seed, 1 in every variant seed) get the exact permutation p of three
constant seeds, 0.1, whatever the size of the difference, so such a metric could never pass. As counts the
evidence is the units: 3 of 360 units against 0 of 360, judged against how much the counts vary between seeds.

The model: a binomial GLM with one rate per arm and seed-level overdispersion estimated from the data
(quasi-binomial, dispersion = Pearson chi2 / (seeds - 2), never below 1, i.e. never less noise than the
binomial). The test is the likelihood-ratio (deviance) F-test on (1, seeds - 2) degrees of freedom, which stays
defined when an arm counts 0 everywhere (a Wald test does not). A widened layer has more units: the rate k/N
is compared, so new units alone do not make a finding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from harness.compare.family import split_key
from harness.facts import keys as pk

Count = tuple[float, float]  # (k, N) of one run


def count_kind(metric: str) -> tuple[bool, str | None]:
    """(is a count of units, 'fraction' when the metric is k/N rather than k)."""
    parts = split_key(metric)
    if parts is None:
        return False, None
    probe, _, name = parts
    if (probe, name) in pk.UNIT_COUNTS:
        return True, pk.UNIT_COUNTS[(probe, name)]
    return probe == pk.DISSECT and name.startswith("concept/"), None


def as_count(metric: str, value: float, channels: Mapping[str, int]) -> Count | None:
    """(k, N) of one run's value, N = the layer's units in that run; None without a unit count for the layer."""
    is_count, kind = count_kind(metric)
    layer = split_key(metric)[1] if is_count else None
    units = channels.get(layer) if layer else None
    if not units:
        return None
    k = value * units if kind == "fraction" else value
    k = float(round(k))
    return (k, float(units)) if 0 <= k <= units else None


def _deviance(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(k > 0, k * np.log(k / (n * p)), 0.0)
        b = np.where(n - k > 0, (n - k) * np.log((n - k) / (n * (1 - p))), 0.0)
    return float(2 * np.sum(a + b))


def count_test(base: Sequence[Count], variant: Sequence[Count]) -> tuple[float | None, float, float]:
    """(p, F statistic, dispersion) of the quasi-binomial LR test; p None below 2 seeds a side or no counts varying."""
    k = np.array([c[0] for c in [*base, *variant]], dtype=float)
    n = np.array([c[1] for c in [*base, *variant]], dtype=float)
    arm = np.array([0] * len(base) + [1] * len(variant))
    if len(base) < 2 or len(variant) < 2:
        return None, math.nan, math.nan
    pooled = k.sum() / n.sum()
    if pooled in (0.0, 1.0):
        return None, 0.0, 1.0  # no unit ever counted (or every one): nothing to compare
    rate = np.array([k[arm == a].sum() / n[arm == a].sum() for a in (0, 1)])[arm]
    d_null, d_full = _deviance(k, n, np.full_like(k, pooled)), _deviance(k, n, rate)
    var = n * rate * (1 - rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = float(np.sum(np.where(var > 0, (k - n * rate) ** 2 / var, 0.0)))
    dof = len(k) - 2
    dispersion = max(1.0, pearson / dof)
    f = max(d_null - d_full, 0.0) / dispersion
    return float(stats.f.sf(f, 1, dof)), f, dispersion


def count_interval(
    base: Sequence[Count], variant: Sequence[Count], dispersion: float, level: float = 0.95
) -> tuple[float, float] | None:
    """Interval for the difference of mean counts (variant - base) under the quasi-binomial variance."""
    if len(base) < 2 or len(variant) < 2 or not math.isfinite(dispersion):
        return None
    var, diff = 0.0, 0.0
    for sign, arm in ((-1, base), (1, variant)):
        k = np.array([c[0] for c in arm])
        n = np.array([c[1] for c in arm])
        p = k.sum() / n.sum()
        diff += sign * float(k.mean())
        var += dispersion * float(np.sum(n * p * (1 - p))) / len(arm) ** 2
    half = float(stats.t.ppf(0.5 + level / 2, len(base) + len(variant) - 2)) * math.sqrt(var)
    return diff - half, diff + half
