"""Split-half replication: do the metrics found beyond seed noise replicate in seeds that did not find them?

Why: the headline's "N of M metrics differ beyond seed noise" is the harness's answer to "loss gives 1-2 bits
per experiment", so it must be trustworthy. BH controls the false discovery rate only when its assumptions
hold (independent seeds, roughly normal metrics, no seed-level artefact shared across metrics); a direct
check is to find the beyond-noise metrics in one half of the seeds and ask whether each moves in the same
direction in the other half. Real effects replicate; chance findings replicate about half the time, and a
seed-level artefact (one half's seeds happen to favour the variant) not at all.

Each side's finished runs are sorted by seed and split into a first and a second half (the extra seed of an
odd count goes to the second half). Discovery uses the same tests, headline family and BH level as the full
comparison (`variant_effects`); a metric replicates when its difference of means in the second half has the same,
non-zero sign. Needs `MIN_SEEDS` finished seeds on each side, so each half has at least two (a t-test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.compare.headline import Headline
from harness.compare.load import Run
from harness.compare.stats import ALPHA, variant_effects

MIN_SEEDS = 4


@dataclass
class Replication:
    """Beyond-noise metrics of the first half of the seeds, and those whose direction the second half repeats.

    Usage: ``r = split_half(base_runs, variant_runs); r.text`` -> "31 beyond noise in seeds 0,1; 27 replicate ..."
    """

    first_seeds: tuple[list[Any], list[Any]]  # (baseline seeds, variant seeds) of the discovery half
    second_seeds: tuple[list[Any], list[Any]]
    beyond_noise: list[str] = field(default_factory=list)
    replicate: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        first = ",".join(map(str, self.first_seeds[1]))
        second = ",".join(map(str, self.second_seeds[1]))
        return (f"split-half check: {len(self.beyond_noise)} beyond noise in seeds {first}, "
                f"{len(self.replicate)} replicate in direction in seeds {second}")  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_half_seeds": {"baseline": self.first_seeds[0], "variant": self.first_seeds[1]},
            "second_half_seeds": {"baseline": self.second_seeds[0], "variant": self.second_seeds[1]},
            "beyond_noise": len(self.beyond_noise),
            "replicate": len(self.replicate),
            "beyond_noise_metrics": self.beyond_noise,
            "replicate_metrics": self.replicate,
            "text": self.text,
        }


def _halves(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    ordered = sorted(runs, key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, str(r.run_dir)))
    cut = len(ordered) // 2
    return ordered[:cut], ordered[cut:]


def _mean(runs: Sequence[Run], metric: str) -> float | None:
    values = [v for r in runs if (v := r.metrics.get(metric)) is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def split_half(
    base_runs: Sequence[Run], variant_runs: Sequence[Run], alpha: float = ALPHA, family: set[str] | None = None
) -> Replication | None:
    """The split-half check of one variant against the baseline (finished runs), or None with too few seeds."""
    base = [r for r in base_runs if r.finished]
    variant = [r for r in variant_runs if r.finished]
    if min(len(base), len(variant)) < MIN_SEEDS:
        return None
    (base_a, base_b), (var_a, var_b) = _halves(base), _halves(variant)
    found = [e for e in variant_effects(base_a, var_a, alpha, family) if e.beyond_noise]
    result = Replication(([r.seed for r in base_a], [r.seed for r in var_a]),
                         ([r.seed for r in base_b], [r.seed for r in var_b]))  # fmt: skip
    for e in found:
        result.beyond_noise.append(e.metric)
        mb, mv = _mean(base_b, e.metric), _mean(var_b, e.metric)
        if mb is None or mv is None or e.diff is None:
            continue
        if mv != mb and math.copysign(1.0, mv - mb) == math.copysign(1.0, e.diff):
            result.replicate.append(e.metric)
    return result


def add_replication(
    headline: Headline, replication: Mapping[str, Replication | None], labels: Mapping[str, str]
) -> None:
    """Add each variant's split-half line under its headline line and `replication` to its headline.json entry
    (null with `replication_note` when there are too few seeds)."""
    for entry in headline.data.get("variants", []):
        variant = entry["variant"]
        if variant not in replication:
            continue
        result = replication[variant]
        entry["replication"] = None if result is None else result.as_dict()
        if result is None:
            entry["replication_note"] = f"split-half check needs {MIN_SEEDS}+ finished seeds per side"
            continue
        line = f"{labels.get(variant, variant)}: {result.text}"
        if entry.get("text") in headline.lines:
            headline.lines.insert(headline.lines.index(entry["text"]) + 1, line)
        else:
            headline.lines.append(line)
    headline.data["lines"] = headline.lines
