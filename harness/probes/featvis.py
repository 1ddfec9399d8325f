"""Feature visualisation: optimise an image per unit to maximise it (after Olah et al. 2017, Lucid/Lucent).

Why these choices (each one fixed a failure of our prototype):
- Objective = the unit's PRE-ReLU value at the centre of its feature map: a post-ReLU objective has zero
  gradient while the unit is off, so units that start off never light up.
- Fourier + colour-decorrelated parameterisation and random jitter/scale each step (see ``fourier.py``).
- All units in ONE batch (one image per unit), one forward per step that stops right after the deepest
  target layer: the cost is that of a few images, not of units x steps forward passes.

Units of a mixed (concat) layer are optimised through the branch that produces them (``mixed3b:40`` is
``mixed3b_3x3:8``): the concat has no pre-ReLU value of its own. The model is put in eval mode, its
parameters stop requiring grad during the run (both restored after), and only the image is differentiated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from harness.facts.edits import CONCAT_BRANCHES
from harness.facts.errors import ConfigError
from harness.models import layers as layer_channels
from harness.models.hooks import capture, eval_mode, forward_until
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.fourier import fft_image, random_transform
from harness.probes.plots import image_grid
from harness.probes.units import parse_units, probe_units


def pre_relu_target(channels: dict[str, int], layer: str, unit: int) -> tuple[str, int]:
    """The (layer, unit) whose pre-ReLU value is ``unit`` of ``layer``: a branch for a concat layer."""
    branches = [f"{layer}_{b}" for b in CONCAT_BRANCHES]
    if all(b in channels for b in branches) and sum(channels[b] for b in branches) == channels[layer]:
        for branch in branches:
            if unit < channels[branch]:
                return branch, unit
            unit -= channels[branch]
    return layer, unit


def visualise(
    model: nn.Module,
    units: Sequence[tuple[str, int]],
    size: int,
    steps: int = 128,
    lr: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
    transform: dict | None = None,
    decay_power: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [U, 3, size, size] in [0, 1], start activation [U], final activation [U]) for ``units``.

    Activations are pre-ReLU at the feature map's centre, measured on the untransformed image.
    Usage: ``images, start, final = visualise(net, [("mixed3b", 3)], size=64)``
    """
    channels = layer_channels(model)
    targets = [pre_relu_target(channels, layer, unit) for layer, unit in units]
    names = list(dict.fromkeys(name for name, _ in targets))
    picks = {
        name: (
            torch.tensor([i for i, t in enumerate(targets) if t[0] == name], device=device),
            torch.tensor([u for n, u in targets if n == name], device=device),
        )
        for name in names
    }
    gen = torch.Generator().manual_seed(int(seed))
    spectrum, render = fft_image(len(targets), size, gen, decay_power, device=device)
    optimizer = torch.optim.Adam([spectrum], lr=lr)
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]

    def objective(x: torch.Tensor) -> torch.Tensor:  # [U] centre pre-ReLU values
        forward_until(model, x, names)  # nothing after the last target layer runs
        value = x.new_zeros(len(targets))
        for name, (rows, idx) in picks.items():
            act = cache[name]
            centre = act[rows, idx, act.shape[-2] // 2, act.shape[-1] // 2] if act.dim() == 4 else act[rows, idx]
            value = value.index_put((rows,), centre)
        return value

    with eval_mode(model), capture(model, names, detach=False, pre_relu=True) as cache:
        try:
            for p in params:
                p.requires_grad_(False)
            with torch.no_grad():
                start = objective(render())
            for _ in range(steps):
                loss = -objective(random_transform(render(), gen, **(transform or {}))).sum()
                (spectrum.grad,) = torch.autograd.grad(loss, [spectrum])
                optimizer.step()
            with torch.no_grad():
                images = render()
                final = objective(images)
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
    return images.detach().cpu(), start.cpu(), final.cpu()


class FeatVisProbe(Probe):
    """Feature visualisations of chosen units (``units``, added units, top curve detectors), one grid per layer.

    Usage: ``FeatVisProbe(units=["mixed3b:3"], steps=128).run(ctx).images["mixed3b"]``
    """

    name = "featvis"
    order = 1  # reads the curves/dissect verdicts of this round
    cheap = False

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        include_added: bool = True,
        top_curve_detectors: int = 8,
        rank_by: str = "selectivity",
        default_units: int = 8,
        max_units: int = 64,
        steps: int = 128,
        lr: float = 0.05,
        image_size: int | None = None,
        max_image_size: int | None = 128,
        pad: int = 4,
        jitter: int = 4,
        scale: float = 0.1,
        decay_power: float = 1.0,
        grid_columns: int = 8,
    ) -> None:
        super().__init__(layers)
        if int(steps) < 0 or int(max_units) < 1 or float(lr) <= 0:
            raise ConfigError(f"featvis: need steps >= 0, max_units >= 1, lr > 0; got {steps}, {max_units}, {lr}")
        self.units, self.include_added = list(units or []), bool(include_added)
        self.top_curve_detectors, self.rank_by = int(top_curve_detectors), rank_by
        self.default_units, self.max_units, self.steps, self.lr = int(default_units), int(max_units), int(steps), lr
        self.image_size, self.decay_power, self.grid_columns = image_size, float(decay_power), int(grid_columns)
        self.max_image_size = None if max_image_size is None else int(max_image_size)
        self.transform = {"pad": int(pad), "jitter": int(jitter), "scale": float(scale)}

    def select(self, ctx: ProbeContext, info: dict) -> list[tuple[str, int]]:
        """The units to visualise, in order: explicit ones, added ones, top curve detectors (else a default)."""
        channels = layer_channels(ctx.model)
        chosen = [(layer, u) for layer, units in parse_units(self.units, channels).items() for u in units]
        if self.include_added:
            chosen += [(layer, u) for layer, units in ctx.added_units().items() for u in units]
        if self.top_curve_detectors > 0:
            rows = probe_units(ctx, "curves", self.target_layers(ctx))
            if rows is None:
                info["curve_detectors"] = "curves probe not available: no curve detectors selected"
            detectors = [r for r in rows or [] if r.get("is_curve_detector")]

            def score(row: dict) -> float:
                value = float(row.get(self.rank_by, 0.0) or 0.0)
                return -math.inf if math.isnan(value) else value

            detectors.sort(key=score, reverse=True)
            chosen += [(r["layer"], int(r["unit"])) for r in detectors[: self.top_curve_detectors]]
        chosen = list(dict.fromkeys(chosen))
        if not chosen:
            last = self.target_layers(ctx)[-1]
            chosen = [(last, u) for u in range(min(self.default_units, layer_channels(ctx.model)[last]))]
        if len(chosen) > self.max_units:
            info["dropped_units"] = len(chosen) - self.max_units
        return chosen[: self.max_units]

    def canvas(self, probe_size: int, info: dict) -> int:
        """The optimised image's side: ``image_size``, else the probe set's, capped at ``max_image_size``.

        Why the cap: every step runs the network on the whole canvas, so a 224 px canvas costs ~3x a 128 px one
        (resnet18's 8 default units: 108 s at 224 px, over the round's 60 s budget). 128 px is Lucid's default
        canvas; the unit read sits at the feature map's centre either way.
        """
        if self.image_size:
            return int(self.image_size)
        if self.max_image_size and probe_size > self.max_image_size:
            info["canvas"] = f"{self.max_image_size} px (probe images {probe_size} px; probes.featvis.max_image_size)"
            return self.max_image_size
        return probe_size

    def run(self, ctx: ProbeContext) -> ProbeResult:
        result = ProbeResult()
        chosen = self.select(ctx, result.info)
        size = self.canvas(int(ctx.probe_set.images.shape[-1]), result.info)
        images, start, final = visualise(
            ctx.model, chosen, size, self.steps, self.lr, ctx.seed, ctx.device, self.transform, self.decay_power
        )
        for i, (layer, unit) in enumerate(chosen):
            result.tables.setdefault("units", []).append(
                {"layer": layer, "unit": unit, "final_activation": float(final[i]), "start_activation": float(start[i])}
            )
        for layer in dict.fromkeys(layer for layer, _ in chosen):
            rows = [i for i, (name, _) in enumerate(chosen) if name == layer]
            labels = [f"{chosen[i][1]}: {float(final[i]):.2f}" for i in rows]  # unit: final pre-ReLU value
            result.images[layer] = image_grid(images[rows], nrow=min(self.grid_columns, len(rows)), labels=labels)
            for i in rows:  # one picture per unit: an image cell of its row in wandb's featvis/units table
                result.unit_images[chosen[i]] = image_grid(images[i : i + 1], nrow=1)
            result.scalars[f"{layer}/mean_start_activation"] = float(start[rows].mean())
            result.scalars[f"{layer}/mean_final_activation"] = float(final[rows].mean())
        return result
