"""Seed curves and A/A splits: how many findings an experiment gives at 2, 3, 5 ... seeds, and how many it
invents when both arms are the same config.

Why: the headline's "N findings beyond noise" is only worth reading if (a) it grows with seeds where the edit does
something and (b) it stays at zero, up to the nominal FDR, when nothing differs. Both are measured on real runs
with the same functions `harness-compare` uses (`family`, `variant_effects`, `split_half`); see
``scripts/compare_seeds.py``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.compare.family import family
from harness.compare.headline import verdict
from harness.compare.load import Run
from harness.compare.replication import split_half
from harness.compare.stats import ALPHA, variant_effects


@dataclass
class Point:
    """One comparison: seeds per arm, the family size, its findings, how many replicate, the loss verdict."""

    seeds: tuple[list[int | None], list[int | None]]
    family_size: int
    findings: list[str]
    replicate: int | None  # None: fewer than 4 seeds per arm
    verdict: str
    needed: list[int] = field(default_factory=list)  # seeds per arm each unresolved family effect would need

    def power_curve(self, sizes: Sequence[int]) -> dict[int, int]:
        """Seeds per arm -> family metrics resolved at the observed effects and spread (findings + those needing
        at most that many seeds): a planning guide, not a promise (effects seen on few seeds are inflated)."""
        return {n: len(self.findings) + sum(k <= n for k in self.needed) for n in sizes}


def _by_seed(runs: Sequence[Run]) -> list[Run]:
    return sorted((r for r in runs if r.finished), key=lambda r: (r.seed is None, r.seed or 0))


def compare_arms(base: Sequence[Run], variant: Sequence[Run], alpha: float = ALPHA,
                 touched: set[str] | None = None) -> Point:  # fmt: skip
    """The headline numbers of one base-vs-variant comparison."""
    fam = family(dict.fromkeys(m for r in [*base, *variant] for m in r.metrics), base, variant, touched=touched)
    effects = variant_effects(base, variant, alpha, fam)
    rep = split_half(base, variant, alpha, fam)
    best = verdict(effects)
    text = "" if best is None else (f"{best.metric} {best.base_mean:.4f} -> {best.variant_mean:.4f} "
                                    f"(p={'n/a' if best.p is None else f'{best.p:.2g}'}, q={best.q})")  # fmt: skip
    return Point(([r.seed for r in base], [r.seed for r in variant]), sum(e.p is not None for e in effects
                 if e.metric in fam), [e.metric for e in effects if e.beyond_noise],
                 None if rep is None else len(rep.replicate), text,
                 sorted(e.seeds_needed for e in effects if e.seeds_needed is not None))  # fmt: skip


def seed_curve(base_runs: Sequence[Run], variant_runs: Sequence[Run], sizes: Sequence[int],
               alpha: float = ALPHA) -> list[Point]:  # fmt: skip
    """The first n seeds (by seed number) of each arm, for each n in `sizes` that both arms have."""
    base, variant = _by_seed(base_runs), _by_seed(variant_runs)
    return [compare_arms(base[:n], variant[:n], alpha) for n in sizes if n <= min(len(base), len(variant))]


def aa_splits(runs: Sequence[Run], per_arm: int, touched: set[str] | None, alpha: float = ALPHA,
              limit: int = 100, seed: int = 0, other_arm: int | None = None) -> list[Point]:  # fmt: skip
    """Every split of one config's runs into two disjoint arms of `per_arm` and `other_arm` (default: the same)
    seeds, each split once (not also its mirror), at most `limit` (drawn at random when there are more);
    `touched`: the planned edit whose family is tested."""
    runs = _by_seed(runs)
    index, other = range(len(runs)), other_arm or per_arm
    splits = [(a, b) for a in itertools.combinations(index, per_arm)
              for b in itertools.combinations([i for i in index if i not in a], other)
              if a < b or other != per_arm]  # fmt: skip
    if len(splits) > limit:
        splits = random.Random(seed).sample(splits, limit)
    return [compare_arms([runs[i] for i in a], [runs[i] for i in b], alpha, touched) for a, b in splits]
