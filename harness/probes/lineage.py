"""Lineage: what did the units added by a widen edit become?

Why: widening a layer only tests a hypothesis ("more room -> more curve detectors") if we know what the
new units turned into. Each added unit, and for comparison each old unit of the same layer, gets ONE
category, checked in this priority order (the first that applies wins):

1. ``dead``: never > 0 on the probe set. Any detector verdict on a silent unit is noise.
2. ``duplicate``: |Pearson r| of its activations (flattened over images and positions) with an OLD unit
   of the layer (for old units: another old unit) > ``duplicate_corr``. A copy adds no new function even
   when it is a curve detector; the original gets the credit.
3. ``curve_detector``: the curves probe's verdict.
4. ``other_detector``: the dissect probe's verdict (a concept detector that is not a curve detector).
5. ``other``.

The curves/dissect verdicts come from those probes, imported lazily (``probe_units``) so this file works
without them; when one is missing, its category is never assigned and ``info`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.facts.keys import LINEAGE_CATEGORIES
from harness.models import layers as layer_channels
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.units import probe_units

CATEGORIES = LINEAGE_CATEGORIES


def best_correlations(acts: torch.Tensor, old: Sequence[int], max_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit: the largest |Pearson r| with an old unit other than itself, and that unit's index (-1: none).

    ``acts`` is [N, C, H, W] (or [N, C]); each unit's values are flattened over images and positions.
    Silent (constant) units correlate with nothing (r = 0) instead of NaN.
    """
    channels = acts.shape[1]
    flat = acts.transpose(0, 1).reshape(channels, -1)
    flat = flat[:, :: max(1, math.ceil(flat.shape[1] / max_positions))].double()  # bound memory on big maps
    flat = flat - flat.mean(dim=1, keepdim=True)
    norm = flat.norm(dim=1, keepdim=True)
    unit = torch.where(norm > 0, flat / norm.clamp_min(1e-300), torch.zeros_like(flat))
    corr = (unit @ unit.T).abs()  # [C, C]
    candidates = torch.zeros(channels, channels, dtype=torch.bool)
    candidates[:, list(old)] = True
    candidates.fill_diagonal_(False)
    corr = torch.where(candidates, corr, torch.full_like(corr, -1.0))
    best, match = corr.max(dim=1)
    has = candidates.any(dim=1)  # a unit with no old unit to compare against has no match (-1)
    return torch.where(has, best, torch.zeros_like(best)).float(), torch.where(has, match, torch.full_like(match, -1))


class LineageProbe(Probe):
    """Categorise the units added by widen edits (and the old units of those layers, as a baseline).

    Usage: ``LineageProbe(duplicate_corr=0.9).run(ctx).scalars["mixed3b_5x5/added/duplicate_frac"]``
    """

    name = "lineage"
    order = 1  # reads the curves/dissect verdicts of this round
    cheap = False

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        duplicate_corr: float = 0.9,
        use_curves: bool = True,
        use_dissect: bool = True,
        max_positions: int = 262144,
    ) -> None:
        super().__init__(layers)
        if not 0.0 < float(duplicate_corr) <= 1.0:
            raise ConfigError(f"lineage.duplicate_corr must be in (0, 1], got {duplicate_corr!r}")
        if int(max_positions) < 1:
            raise ConfigError(f"lineage.max_positions must be >= 1, got {max_positions!r}")
        self.duplicate_corr = float(duplicate_corr)
        self.use_curves, self.use_dissect = bool(use_curves), bool(use_dissect)
        self.max_positions = int(max_positions)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        # `layers` here restricts which widened layers are covered; by default all of them.
        added = {k: v for k, v in ctx.added_units().items() if self.layers is None or k in self.layers}
        if not added:
            return ProbeResult(info={"skipped": "no widen edits in this run"})
        layers, info = list(added), {}
        verdicts: dict[str, set[tuple[str, int]]] = {}
        for probe, column, wanted in (
            ("curves", "is_curve_detector", self.use_curves),
            ("dissect", "is_detector", self.use_dissect),
        ):
            rows = probe_units(ctx, probe, layers) if wanted else None
            if rows is None:
                info[f"no_{probe}"] = f"{probe} verdicts {'not available' if wanted else 'disabled'}: category unused"
            verdicts[probe] = {(r["layer"], int(r["unit"])) for r in rows or [] if r.get(column)}

        result = ProbeResult(info=info)
        table = result.tables.setdefault("units", [])
        acts = ctx.activations(layers)
        channels = layer_channels(ctx.model)
        for layer in layers:
            new = set(added[layer])
            old = [u for u in range(channels[layer]) if u not in new]
            best, match = best_correlations(acts[layer], old, self.max_positions)
            dead = acts[layer].transpose(0, 1).reshape(channels[layer], -1).amax(dim=1) <= 0
            counts = {group: dict.fromkeys(CATEGORIES, 0) for group in ("added", "old")}
            for unit in range(channels[layer]):
                key = (layer, unit)
                category = (
                    "dead"
                    if dead[unit]
                    else "duplicate"
                    if best[unit] > self.duplicate_corr
                    else "curve_detector"
                    if key in verdicts["curves"]
                    else "other_detector"
                    if key in verdicts["dissect"]
                    else "other"
                )
                counts["added" if unit in new else "old"][category] += 1
                table.append(
                    {
                        "layer": layer,
                        "unit": unit,
                        "added": unit in new,
                        "category": category,
                        "best_corr": float(best[unit]),
                        "best_match": int(match[unit]),
                    }
                )
            for group, tally in counts.items():
                total = max(1, sum(tally.values()))
                for category, n in tally.items():
                    result.scalars[f"{layer}/{group}/{category}"] = float(n)
                    result.scalars[f"{layer}/{group}/{category}_frac"] = n / total
        return result
