"""Ablation: zero a group of units and measure what the model loses, overall and per class.

Why: a unit family that looks meaningful (curve detectors, the units a widen edit added) matters only
if the model uses it. Each group is compared with random groups of the same size drawn from the same
layer's other units, so "curve detectors cost 3% accuracy" can be read against "any 5 units cost 1%".

Groups per layer: ``curve_detectors`` (the curves probe's verdicts, computed lazily; skipped with a
note in ``info`` when that probe is unavailable), ``added`` (``ctx.added_units()``), ``custom`` (the
``units`` setting), and for each of them ``random_<group>``: the mean over ``random_draws`` random groups.
Ablation = a forward hook multiplying the chosen channels of the layer's output by 0, removed afterwards.

Speed: every group costs a forward pass per draw. Models with ``resume_point``/``forward_from`` (our
InceptionV1) pay for the layers before the ablated one only once: the intact pass keeps the input of the
stage computing each ablated layer, and each ablated pass starts there (same numbers; on the full
InceptionV1 at 224 px, a mixed3b pass skips the stem and mixed3a, about a third of the FLOPs).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from harness.hooks import eval_mode, resolve
from harness.models import layers as layer_channels
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.units import parse_units, probe_units

GROUPS = ("curve_detectors", "added")


Resume = dict[str, tuple[str, list[torch.Tensor]]]  # ablated layer -> (stage name, its input per batch)


def intact_pass(ctx: ProbeContext, layers: Sequence[str]) -> tuple[torch.Tensor, Resume]:
    """Intact logits over the probe set and, when the model can resume mid-network, each layer's stage input.

    One forward pass either way; the stage inputs are kept batch by batch (at 224 px, mixed3b's input over
    512 images is 0.4 GB) so that `ablated_logits` can skip everything before the stage.
    """
    model = ctx.model
    if not (callable(getattr(model, "forward_from", None)) and callable(getattr(model, "resume_point", None))):
        return ctx.logits(), {}
    points = {layer: model.resume_point(layer) for layer in dict.fromkeys(layers)}
    stages = {name: module for name, module in points.values()}
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in stages}

    def keep(name: str):
        def hook(_module: torch.nn.Module, args: tuple) -> None:
            inputs[name].append(args[0].detach())

        return hook

    handles = [module.register_forward_pre_hook(keep(name)) for name, module in stages.items()]
    try:
        logits = ctx.logits()
    finally:
        for handle in handles:
            handle.remove()
    return logits, {layer: (name, inputs[name]) for layer, (name, _) in points.items()}


def ablated_logits(ctx: ProbeContext, layer: str, units: Sequence[int], resume: Resume | None = None) -> torch.Tensor:
    """Model outputs over the probe set with ``units`` of ``layer`` zeroed (hook removed afterwards).

    With ``resume`` from `intact_pass`, the pass starts at the stage computing ``layer``.
    """
    module = resolve(ctx.model, [layer])[layer]
    keep = torch.ones(layer_channels(ctx.model)[layer])
    keep[list(units)] = 0.0

    def zero(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (output.dim() - 2)  # broadcast over batch and positions
        return output * keep.to(output.device, output.dtype).view(shape)

    handle = module.register_forward_hook(zero)
    try:
        if resume and layer in resume:
            stage, inputs = resume[layer]
            with torch.no_grad(), eval_mode(ctx.model):
                return torch.cat([ctx.model.forward_from(stage, x).float().cpu() for x in inputs])
        return ctx.logits()
    finally:
        handle.remove()


def scores(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict[str, torch.Tensor]:
    """Mean loss and accuracy overall and per class ([n_classes]; NaN for classes absent from the set)."""
    loss = F.cross_entropy(logits.double(), labels, reduction="none")
    correct = (logits.argmax(dim=1) == labels).double()
    count = torch.bincount(labels, minlength=n_classes).double()
    per_class = {
        name: torch.zeros(n_classes, dtype=torch.float64).index_add_(0, labels, v) / count
        for name, v in (("loss", loss), ("acc", correct))
    }
    return {"loss": loss.mean(), "acc": correct.mean(), "class_loss": per_class["loss"], "class_acc": per_class["acc"]}


class AblationProbe(Probe):
    """Zero unit groups (curve detectors, added units, custom lists, random controls); report Δloss/Δacc.

    Usage: ``AblationProbe(units=["mixed3b:3"]).run(ctx).scalars["mixed3b/custom/delta_acc"]``
    """

    name = "ablation"
    order = 1  # reads the curves/dissect verdicts of this round
    cheap = False

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        groups: Sequence[str] = GROUPS,
        units: Sequence[str] | None = None,
        random_draws: int = 3,
    ) -> None:
        super().__init__(layers)
        unknown = [g for g in groups or [] if g not in GROUPS]
        if unknown:
            raise ConfigError(f"ablation.groups: unknown {unknown}; valid: {', '.join(GROUPS)}")
        if int(random_draws) < 0:
            raise ConfigError(f"ablation.random_draws must be >= 0, got {random_draws!r}")
        self.groups, self.units, self.random_draws = list(groups or []), list(units or []), int(random_draws)

    def unit_groups(self, ctx: ProbeContext, info: dict) -> dict[tuple[str, str], list[int]]:
        """(layer, group name) -> units to zero."""
        channels = layer_channels(ctx.model)
        custom = parse_units(self.units, channels)  # bad specs fail before any expensive work
        groups: dict[tuple[str, str], list[int]] = {}
        if "curve_detectors" in self.groups:
            layers = self.target_layers(ctx)
            rows = probe_units(ctx, "curves", layers)
            if rows is None:
                info["curve_detectors"] = "curves probe not available: group skipped"
            for layer in layers if rows is not None else []:
                found = sorted(int(r["unit"]) for r in rows if r["layer"] == layer and r.get("is_curve_detector"))
                if found:
                    groups[(layer, "curve_detectors")] = found
        if "added" in self.groups:
            groups.update({(layer, "added"): units for layer, units in ctx.added_units().items()})
        groups.update({(layer, "custom"): units for layer, units in custom.items()})
        return groups

    def run(self, ctx: ProbeContext) -> ProbeResult:
        result = ProbeResult()
        labels, classes = ctx.probe_set.labels.cpu().long(), ctx.probe_set.classes
        groups = self.unit_groups(ctx, result.info)
        logits, resume = intact_pass(ctx, [layer for layer, _ in groups])
        intact = scores(logits, labels, len(classes))
        result.info.update(loss=float(intact["loss"]), acc=float(intact["acc"]))
        channels = layer_channels(ctx.model)
        for (layer, group), units in groups.items():
            trials = {group: [units]}
            others = [u for u in range(channels[layer]) if u not in set(units)]
            if others and self.random_draws:
                # Seeded per (run seed, layer, group): the same control groups every time.
                gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + zlib.crc32(f"{layer}/{group}".encode()))
                trials[f"random_{group}"] = [
                    [others[i] for i in torch.randperm(len(others), generator=gen)[: len(units)].tolist()]
                    for _ in range(self.random_draws)
                ]
            for name, draws in trials.items():
                found = [scores(ablated_logits(ctx, layer, d, resume), labels, len(classes)) for d in draws]
                delta = {k: torch.stack([f[k] for f in found]).mean(0) - intact[k] for k in intact}
                prefix = f"{layer}/{name}"
                result.scalars[f"{prefix}/delta_loss"] = float(delta["loss"])
                result.scalars[f"{prefix}/delta_acc"] = float(delta["acc"])
                result.scalars[f"{prefix}/size"] = float(len(draws[0]))
                result.tables.setdefault("groups", []).append(
                    {
                        "layer": layer,
                        "group": name,
                        "size": len(draws[0]),
                        "draws": len(draws),
                        "units": ",".join(map(str, draws[0])),
                        "delta_loss": float(delta["loss"]),
                        "delta_acc": float(delta["acc"]),
                    }
                )
                for k, cls in enumerate(classes):
                    if torch.isnan(delta["class_acc"][k]):
                        continue  # class absent from the probe set
                    result.scalars[f"{prefix}/delta_acc/{cls}"] = float(delta["class_acc"][k])
                    result.tables.setdefault("classes", []).append(
                        {
                            "layer": layer,
                            "group": name,
                            "class": cls,
                            "delta_acc": float(delta["class_acc"][k]),
                            "delta_loss": float(delta["class_loss"][k]),
                        }
                    )
        return result
