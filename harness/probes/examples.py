"""Dataset examples: the top-k probe-set images of chosen units.

Why: the quickest way for a person to see what a unit (for instance one a widen edit added)
responds to, next to its feature visualisation. An image's score for a unit is the unit's
maximum activation over positions (the strongest local match, as in Olah et al.'s dataset
examples); ties keep probe-set order, so the result is deterministic.

Which units: the `units` setting ("layer:index" strings), then the units the run's widen edits
added (`ctx.added_units()`); if neither names any, the first `default_units` units of the last
probe layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.models.names import resolve
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.plots import image_grid


def parse_unit(spec: str) -> tuple[str, int]:
    """'mixed3b:12' -> ('mixed3b', 12); ConfigError on anything else."""
    layer, sep, index = str(spec).rpartition(":")
    if not sep or not layer or not index.strip().isdigit():
        raise ConfigError(f"examples.units entries look like 'mixed3b:12' (layer:index), got {spec!r}")
    return layer, int(index)


class TopExamples(Probe):
    """Top-k probe-set images per selected unit: an image grid per layer (one row per unit) and a table.

    Usage: ``TopExamples(units=["mixed3b:12"], k=8).run(ctx).images["mixed3b"]``

    Table "units": layer, unit, top_indices, top_values, top_classes (comma-separated strings,
    best first; indices into the probe set).
    """

    name = "examples"
    cheap = False

    def __init__(
        self, layers: list[str] | None = None, units: Sequence[str] | None = None, k: int = 8, default_units: int = 8
    ) -> None:
        super().__init__(layers)
        if int(k) < 1 or int(default_units) < 0:
            raise ConfigError(f"examples: k must be >= 1 and default_units >= 0, got {k} and {default_units}")
        self.units = [parse_unit(spec) for spec in (units or [])]
        self.k = int(k)
        self.default_units = int(default_units)

    def select(self, ctx: ProbeContext) -> dict[str, list[int]]:
        """Layer -> unit indices to show, in the order named, duplicates dropped."""
        chosen: dict[str, list[int]] = {}
        for layer, unit in [*self.units, *((name, u) for name, us in ctx.added_units().items() for u in us)]:
            if unit not in chosen.setdefault(layer, []):
                chosen[layer].append(unit)
        if not chosen and self.default_units:
            chosen[self.target_layers(ctx)[-1]] = list(range(self.default_units))
        resolve(ctx.model, list(chosen))  # unknown layer -> ConfigError naming the valid ones
        return chosen

    def run(self, ctx: ProbeContext) -> ProbeResult:
        chosen = self.select(ctx)
        acts = ctx.activations(list(chosen))
        ps, result, rows = ctx.probe_set, ProbeResult(), []
        for layer, units in chosen.items():
            channels = acts[layer].shape[1]
            named = [u for u in units if u >= channels and (layer, u) in self.units]
            if named:
                raise ConfigError(f"examples.units: {layer}:{named[0]} out of range; {layer!r} has {channels} units")
            units = [u for u in units if u < channels]  # the default choice on a narrow layer: what exists
            a = acts[layer][:, units]
            score = a.flatten(2).amax(dim=2) if a.dim() > 2 else a  # [N, U]: max over positions
            k = min(self.k, score.shape[0])
            values, order = torch.sort(score, dim=0, descending=True, stable=True)
            values, order = values[:k].T, order[:k].T  # [U, k]
            for unit, idx, val in zip(units, order.tolist(), values.tolist()):
                rows.append(
                    {
                        "layer": layer,
                        "unit": unit,
                        "top_indices": ",".join(str(i) for i in idx),
                        "top_values": ",".join(f"{v:.4g}" for v in val),
                        "top_classes": ",".join(ps.classes[int(ps.labels[i])] for i in idx),
                    }
                )
            labels = [f"{u} {v:.2f}" for u, vs in zip(units, values.tolist()) for v in vs]
            result.images[layer] = image_grid(ps.images[order.flatten()], nrow=k, labels=labels)
            for unit, idx in zip(units, order):  # a unit's top-k strip: an image cell of its wandb table row
                result.unit_images[(layer, unit)] = image_grid(ps.images[idx], nrow=k)
        result.tables["units"] = rows
        return result
