"""Unit-level shifts: a probe's per-unit table compared between arms, with a hierarchical bootstrap interval.

Why: every probe measures hundreds of units per run (selectivity, IoU, activation statistics) and the scalar
tests see one number per run. The per-unit distributions say more, but units of one seed are not independent
(they share a training run), so resampling units alone would call seed noise a shift. The bootstrap resamples
seeds within each arm, then units within each drawn seed (hierarchical: Saravanan et al. 2020, "Application of
the hierarchical bootstrap to multi-level data in neuroscience"). The statistic per arm is the mean over seeds of
the median over units (medians: curve selectivity is heavy-tailed). With 2-3 seeds an arm's resampled seeds
cover little of the seed-level spread, so these intervals are exploratory: shown with their interval, never
counted as findings.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.compare.load import Run
from harness.compare.stats import EXPLORATORY, Effect
from harness.facts import keys as pk

DRAWS = 1000
MIN_SEEDS = 2  # per arm: with one seed the bootstrap resamples units only and calls seed noise a shift
STAT = "unit_median"  # metric suffix: <probe>/<layer>/<column>/unit_median


def read_units(path: Path, columns: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """layer -> column -> finite per-unit values of one table (a missing or unreadable file gives {})."""
    out: dict[str, dict[str, list[float]]] = {}
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                layer = out.setdefault(str(row.get(pk.LAYER)), {c: [] for c in columns})
                for c in columns:
                    try:
                        value = float(row.get(c) or "nan")
                    except ValueError:
                        continue
                    if math.isfinite(value):
                        layer[c].append(value)
    except OSError:
        return {}
    return {layer: {c: np.asarray(v) for c, v in cols.items()} for layer, cols in out.items()}


def _arm_draws(seeds: Sequence[np.ndarray], rng: np.random.Generator, draws: int) -> np.ndarray:
    """[draws] bootstrap values of mean-over-seeds(median-over-units): seeds resampled, then units within each."""
    per_seed = np.stack([np.median(v[rng.integers(0, len(v), (draws, len(v)))], axis=1) for v in seeds])
    pick = rng.integers(0, len(seeds), (draws, len(seeds)))  # seeds drawn with replacement ...
    column = rng.integers(0, draws, (draws, len(seeds)))  # ... each with its own unit resample
    return per_seed[pick, column].mean(axis=1)


def shift(
    base: Sequence[np.ndarray], variant: Sequence[np.ndarray], seed: int = 0, draws: int = DRAWS, level: float = 0.95
) -> tuple[float, float, float, float, float]:
    """(base stat, variant stat, variant - base, interval low, high) for per-seed arrays of unit values."""
    rng = np.random.default_rng(seed)
    b = float(np.mean([np.median(v) for v in base]))
    v = float(np.mean([np.median(x) for x in variant]))
    boot = _arm_draws(variant, rng, draws) - _arm_draws(base, rng, draws)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return b, v, v - b, float(low), float(high)


def unit_shifts(
    base_runs: Sequence[Run], variant_runs: Sequence[Run], layers: set[str] | None
) -> list[tuple[str, int, int, tuple[float, float, float, float, float]]]:
    """(metric, base seeds, variant seeds, `shift` result) per probe column and layer (None: every layer) that
    both arms hold for at least `MIN_SEEDS` seeds each."""
    out = []
    for probe, columns in pk.UNIT_COLUMNS.items():
        tables = [[read_units(r.tables[probe], columns) for r in runs if probe in r.tables]
                  for runs in (base_runs, variant_runs)]  # fmt: skip
        names = dict.fromkeys(layer for t in tables[0] for layer in t)
        for layer in (n for n in names if layers is None or n in layers):
            for column in columns:
                arms = [[t[layer][column] for t in side if layer in t and len(t[layer][column])] for side in tables]
                if all(len(arm) >= MIN_SEEDS for arm in arms):
                    out.append((f"{probe}/{layer}/{column}/{STAT}", len(arms[0]), len(arms[1]), shift(*arms)))
    return out


def unit_effects(base_runs: Sequence[Run], variant_runs: Sequence[Run], layers: set[str] | None) -> list[Effect]:
    """The unit-level shifts as exploratory effects (test "unit bootstrap", interval in `ci`)."""
    out = []
    for metric, nb, nv, (b, v, diff, low, high) in unit_shifts(base_runs, variant_runs, layers):
        note = "unit-level: median over units per seed; hierarchical bootstrap (seeds, then units); exploratory"
        out.append(Effect(metric, nb, nv, b, None, v, None, diff, None, None, note=note, role=EXPLORATORY,
                          test="unit bootstrap", ci=(low, high)))  # fmt: skip
    return out
