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
InceptionV1 at 224 px, a mixed3b pass skips the stem and mixed3a, about a third of the FLOPs). When the
ablated layer is a stage's own output (``mixed3b``, not ``mixed3b_5x5``) and the model has
``forward_after``, the ablated passes start after the stage, from its output as this round's shared
activation capture holds it when the layer is a probe layer (no pass through the stem at all). All
draws of one layer run together, ``groups_per_pass`` per forward pass (batch expansion: the batch is
repeated per group, each copy with its own units zeroed), so the layers after the ablated one see larger
batches; the numbers are those of one pass per group.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from harness.facts.errors import ConfigError
from harness.facts.keys import ABLATION, DELTA_ACC, DELTA_LOSS, GROUP_SIZE, RANDOM_GROUP
from harness.models import layers as layer_channels
from harness.models.hooks import eval_mode
from harness.models.names import resolve
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.probe_set import probe_layout
from harness.probes.units import parse_units, probe_units

GROUPS = ("curve_detectors", "added")


Resume = dict[str, tuple[str, bool, list[torch.Tensor]]]  # ablated layer -> (stage, after it?, tensors per batch)


def resumable(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "forward_from", None)) and callable(getattr(model, "resume_point", None))


def intact_pass(ctx: ProbeContext, layers: Sequence[str]) -> tuple[torch.Tensor, Resume]:
    """Intact logits over the probe set and, when the model can resume mid-network, what each ablated pass
    starts from: the input of the stage computing the layer or, when the layer is that stage's output and
    the model has ``forward_after``, the stage's output (the stage itself is then not recomputed).

    A stage output that a probe of this round already captured (``ctx.cached_activations``: the layer is a
    probe layer) is taken from there, and when every layer is such, the intact logits come from the rest of
    the network after it: no pass through the stem at all. Otherwise one forward pass keeps the tensors,
    batch by batch (at 224 px, mixed3b's input over 512 images is 0.4 GB, its output 0.8 GB).
    """
    model = ctx.model
    if not resumable(model):
        return ctx.logits(), {}
    modules = resolve(model, list(dict.fromkeys(layers)))
    can_skip = callable(getattr(model, "forward_after", None))
    points = {}
    for layer, module in modules.items():
        name, stage = model.resume_point(layer)
        points[layer] = (name, stage, can_skip and module is stage)
    resume: Resume = {}
    batch = ctx.images_per_pass(*ctx.probe_set.images.shape[-2:])
    for layer, (name, _, after) in points.items():
        if after and (cached := ctx.cached_activations(layer)) is not None:
            resume[layer] = (name, True, list(cached.split(batch)))
    points = {layer: point for layer, point in points.items() if layer not in resume}
    if not points and resume:
        name, _, kept = next(iter(resume.values()))
        with torch.no_grad(), eval_mode(model):
            return torch.cat([model.forward_after(name, probe_layout(x)).float().cpu() for x in kept]), resume
    kept: dict[tuple[str, bool], list[torch.Tensor]] = {(name, after): [] for name, _, after in points.values()}

    def keep(key: tuple[str, bool]):
        def before(_module: torch.nn.Module, args: tuple) -> None:
            kept[key].append(args[0].detach())

        def after(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
            kept[key].append(output.detach())

        return after if key[1] else before

    stages = {name: stage for name, stage, _ in points.values()}
    handles = [
        stages[name].register_forward_hook(keep((name, True)))
        if after
        else stages[name].register_forward_pre_hook(keep((name, False)))
        for name, after in kept
    ]
    try:
        logits = ctx.logits()
    finally:
        for handle in handles:
            handle.remove()
    resume.update({layer: (name, after, kept[(name, after)]) for layer, (name, _, after) in points.items()})
    return logits, resume


def ablated_logits(
    ctx: ProbeContext,
    layer: str,
    groups: Sequence[Sequence[int]],
    resume: Resume | None = None,
    per_pass: int = 1,
) -> list[torch.Tensor]:
    """Model outputs [N, classes] over the probe set with each unit group of ``layer`` zeroed, one per group.

    ``per_pass`` groups share a forward pass (batch expansion): each batch is repeated once per group and
    copy g has group g's units zeroed. Same numbers as one pass per group; fewer, larger passes (the layers
    after the ablated one see batches of ``per_pass`` x the usual). With ``resume`` from `intact_pass`, the
    passes start at the stage computing ``layer`` or, for a stage's own output, right after it.
    """
    model = ctx.model
    masks = torch.ones(len(groups), layer_channels(model)[layer])
    for g, units in enumerate(groups):
        masks[g, list(units)] = 0.0
    stage, after, kept = resume[layer] if resume and layer in resume else (None, False, [])
    if not kept:  # full passes from the images
        size = ctx.probe_set.images.shape[-2:]
        kept = [x for x, _ in ctx.probe_set.batches(ctx.images_per_pass(*size), device=ctx.device)]
    current: list[torch.Tensor] = []  # the masks of the pass under way, one row per image

    def zero(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        shape = (len(output), -1) + (1,) * (output.dim() - 2)  # broadcast over positions
        return output * current[0].to(output.device, output.dtype).view(shape)

    out: list[list[torch.Tensor]] = [[] for _ in groups]
    handle = None if after else resolve(model, [layer])[layer].register_forward_hook(zero)
    try:
        with torch.no_grad(), eval_mode(model):
            for first in range(0, len(groups), max(1, per_pass)):
                chunk = masks[first : first + max(1, per_pass)]
                for x in kept:
                    current[:] = [chunk.repeat_interleave(len(x), 0)]
                    batch = probe_layout(torch.cat([x] * len(chunk)))
                    if after:
                        logits = model.forward_after(stage, zero(None, (), batch))
                    elif stage is not None:
                        logits = model.forward_from(stage, batch)
                    else:
                        logits = model(batch)
                    for g, part in enumerate(logits.float().cpu().split(len(x))):
                        out[first + g].append(part)
    finally:
        if handle is not None:
            handle.remove()
    return [torch.cat(parts) for parts in out]


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

    name = ABLATION
    order = 1  # reads the curves/dissect verdicts of this round
    cheap = False

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        groups: Sequence[str] = GROUPS,
        units: Sequence[str] | None = None,
        random_draws: int = 3,
        groups_per_pass: int = 4,
    ) -> None:
        super().__init__(layers)
        unknown = [g for g in groups or [] if g not in GROUPS]
        if unknown:
            raise ConfigError(f"ablation.groups: unknown {unknown}; valid: {', '.join(GROUPS)}")
        if int(random_draws) < 0:
            raise ConfigError(f"ablation.random_draws must be >= 0, got {random_draws!r}")
        if int(groups_per_pass) < 1:
            raise ConfigError(f"ablation.groups_per_pass must be >= 1, got {groups_per_pass!r}")
        self.groups, self.units, self.random_draws = list(groups or []), list(units or []), int(random_draws)
        self.groups_per_pass = int(groups_per_pass)

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
        trials: dict[tuple[str, str], list[list[int]]] = {}  # (layer, group or its random control) -> unit draws
        for (layer, group), units in groups.items():
            trials[(layer, group)] = [units]
            others = [u for u in range(channels[layer]) if u not in set(units)]
            if others and self.random_draws:
                # Seeded per (run seed, layer, group): the same control groups every time.
                gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + zlib.crc32(f"{layer}/{group}".encode()))
                trials[(layer, f"{RANDOM_GROUP}{group}")] = [
                    [others[i] for i in torch.randperm(len(others), generator=gen)[: len(units)].tolist()]
                    for _ in range(self.random_draws)
                ]
        found: dict[tuple[str, str], list[dict]] = {key: [] for key in trials}
        for layer in dict.fromkeys(layer for layer, _ in trials):  # every draw of a layer in as few passes as fit
            keys = [(key, d) for key, draws in trials.items() if key[0] == layer for d in draws]
            logits_all = ablated_logits(ctx, layer, [d for _, d in keys], resume, self.groups_per_pass)
            for (key, _), logits_one in zip(keys, logits_all):
                found[key].append(scores(logits_one, labels, len(classes)))
        for (layer, name), draws in trials.items():
            delta = {k: torch.stack([f[k] for f in found[(layer, name)]]).mean(0) - intact[k] for k in intact}
            prefix = f"{layer}/{name}"
            result.scalars[f"{prefix}/{DELTA_LOSS}"] = float(delta["loss"])
            result.scalars[f"{prefix}/{DELTA_ACC}"] = float(delta["acc"])
            result.scalars[f"{prefix}/{GROUP_SIZE}"] = float(len(draws[0]))
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
