"""Where a layer's units come from and where they go: the wiring that growth criteria and growth edits read.

Why: "where to grow" criteria (GradMax, SensLI, the oracle's candidates) ask, for a candidate layer, which
convolution makes its units (its weight is the fan-in of a new unit), which layers read them (their new
input columns are the fan-out), at which input channels, and through which pools or normalisations. That is
a fact about the model, not about any one criterion, so it is written once here, by layer name.

InceptionV1 is wired from its channel plan (:mod:`harness.facts.edits`) and the consumer list that weight
surgery already uses (:func:`harness.models.surgery.consumers`). Any other model is wired from its traced graph
by the planner that ``model.widen`` itself uses (:func:`harness.models.graph_widen.widenable`): the widen
targets are the convs/linears it accepts (not the head, not writers of a residual stream, not grouped convs),
the consumers those whose input columns it would insert, the path the graph nodes between them (modules, and
:class:`Op` for functions and methods). Insert positions are InceptionV1's only.

Usage:
    w = wiring(net, "mixed3a_5x5")
    w.producer            # the Conv2d computing mixed3a_5x5's units (reads w.producer's input)
    [(c.module, c.channels, c.path) for c in w.consumers]   # mixed3b's four input convs, channels 64:80, ...
    wirings(torchvision.models.resnet18())   # every block's first conv, read by the block's second conv
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from harness.facts.errors import ConfigError
from harness.models.graph_widen import BINARY, BINARY_METHODS, WidenPlan, module_width, plan_traced, trace


class SamePad(nn.Module):
    """TF "SAME" padding as a module, for a consumer whose unit pads its input before the convolution."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from harness.models.inception_v1 import pad_same

        return pad_same(x, self.kernel, self.stride)


@dataclass(frozen=True)
class Op:
    """A function or method of a traced graph on a consumer path: ``fn`` (``torch.flatten``, ``"permute"``,
    ``operator.mul``) with its other arguments; for a binary op, what the target's units are combined with:
    ``operand`` "scalar" (``value``), "parameter" (one entry per channel: the new units' entry is 1, as
    ``model.widen`` writes it) or "tensor" (another activation: a gate, an attention map, a broadcast)."""

    fn: Any
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    operand: str | None = None
    value: float = 1.0

    @property
    def name(self) -> str:
        return self.fn if isinstance(self.fn, str) else getattr(self.fn, "__name__", str(self.fn))


@dataclass(frozen=True)
class Consumer:
    """A layer reading a target's units: `module` (Conv2d or Linear) sees them at input `channels`, after `path`.

    `path` is the chain of steps between the target's output and `module`'s input, in order. InceptionV1:
    modules after the (post-activation) output: max pools, local response norm, the head's average pool;
    channel concatenation is implied by `channels`. Other models: every graph node after the target's raw
    output (batch norm, activation, pools, flatten, permute, ...), as modules or :class:`Op`. An empty path
    means `module` reads the target's output directly.
    """

    module: nn.Module
    channels: slice
    path: tuple[nn.Module | Op, ...] = ()


@dataclass(frozen=True)
class Wiring:
    """One widen target: the Conv2d computing its units (`producer`) and the layers reading them."""

    target: str
    producer: nn.Module
    consumers: tuple[Consumer, ...]


def _inception(model: nn.Module) -> bool:
    from harness.models.inception_v1 import InceptionV1

    return isinstance(model, InceptionV1)


def _unsupported(model: nn.Module, what: str) -> ConfigError:
    return ConfigError(
        f"{what}: the wiring of {type(model).__name__} is not known (only InceptionV1 is wired so far; "
        f"add it to harness.models.consumers)"
    )


@dataclass
class Widenable:
    """Every conv/linear of a traced model that ``model.widen`` accepts (its plan for one more unit, in forward
    order), the ones it refuses with the reason, and the graph they were found on."""

    plans: dict[str, WidenPlan]
    refused: dict[str, str]
    graph: fx.GraphModule

    def width(self, target: str) -> int:
        return module_width(self.graph.get_submodule(target))

    def grow_at(self, layer: str) -> str | None:
        """The target to widen for more capacity at module ``layer``: the widest widenable conv/linear inside it
        (the first of equals: ``layer2.0`` -> ``layer2.0.conv1``, a MobileNet block -> its expansion conv), else the
        nearest one whose new channels reach it (a ReLU ``features.2`` -> the conv ``features.0`` before it);
        None when there is none (a ConvNeXt downsample: its conv writes the residual stream)."""
        inside = [t for t in self.plans if t.startswith(f"{layer}.")]
        if inside:
            return max(inside, key=self.width)  # max keeps the first of equal widths
        nodes = {n.name for n in self.graph.graph.nodes if n.op == "call_module" and n.target == layer}
        feeding = [t for t, plan in self.plans.items() if nodes & plan.reached]
        return feeding[-1] if feeding else None


def widenable(net: nn.Module, image_size: int = 64) -> Widenable:
    """Trace ``net`` once and plan one more unit for each of its ungrouped convs and linears.

    Usage: ``list(widenable(torchvision.models.resnet18()).plans)`` -> ``['layer1.0.conv1', ..., 'layer4.1.conv1']``
    (every block's first conv: the stem, second convs and downsamples write the residual stream, the head is
    the output).
    """
    graph = trace(net, image_size)
    modules = dict(net.named_modules())
    plans: dict[str, WidenPlan] = {}
    refused: dict[str, str] = {}
    for node in graph.graph.nodes:
        target = str(node.target)
        module = modules.get(target) if node.op == "call_module" else None
        if target in plans or target in refused or not isinstance(module, nn.Conv2d | nn.Linear):
            continue
        if getattr(module, "groups", 1) != 1:
            continue
        try:
            plans[target] = plan_traced(graph, modules, target, 1)
        except ConfigError as err:
            refused[target] = str(err)
    return Widenable(plans, refused, graph)


def growth_facts(net: nn.Module, layers: Sequence[str], image_size: int = 64) -> dict[str, Any]:
    """What a run record keeps so that torch-free readers (harness-suggest) can grow a non-Inception model:
    ``widen_targets`` (target -> width, forward order) and ``grow_at`` (probe layer -> the target growing it).
    A model that cannot be traced gets ``widen_targets: {}`` and ``widen_error`` (never an exception)."""
    try:
        found = widenable(net, image_size)
    except Exception as err:  # an untraceable user module: the run trains, suggestions say why they cannot widen
        return {"widen_targets": {}, "widen_error": str(err).splitlines()[0] if str(err) else type(err).__name__}
    grow_at = {layer: found.grow_at(layer) for layer in dict.fromkeys(str(x).split(":")[0] for x in layers)}
    return {"widen_targets": {t: found.width(t) for t in found.plans},
            "grow_at": {k: v for k, v in grow_at.items() if v is not None}}  # fmt: skip


def widen_candidates(model: nn.Module, image_size: int = 64) -> list[str]:
    """Every layer a widen edit may grow, in forward order (InceptionV1: stem layers and every branch; any other
    model: the convs/linears ``model.widen`` accepts, found on its graph traced at ``image_size``)."""
    if not _inception(model):
        return list(widenable(model, image_size).plans)
    from harness.facts.edits import widen_targets

    return widen_targets(model.config["insert"], model.config["last_layer"])


def insert_positions(model: nn.Module) -> list[str]:
    """Layers after which a block can be inserted, in forward order (InceptionV1: every mixed block, inserted
    ones included; an insert after a name goes right behind it, before any stride-2 pool)."""
    if not _inception(model):
        raise _unsupported(model, "cannot list insert positions")
    return [block.name for block in model.plan.blocks]


def wirings(model: nn.Module, targets: Sequence[str] | None = None, image_size: int = 64) -> list[Wiring]:
    """The wiring of each of `targets` (default: every widen candidate), tracing a non-Inception model once."""
    if _inception(model):
        return [wiring(model, t) for t in (widen_candidates(model) if targets is None else targets)]
    found = widenable(model, image_size)
    out = []
    for target in found.plans if targets is None else targets:
        if target not in found.plans:
            valid = ", ".join(found.plans) or "(none: nothing in this model can be widened)"
            raise ConfigError(found.refused.get(target) or f"unknown widen target {target!r}; valid: {valid}")
        plan, producer = found.plans[target], model.get_submodule(target)
        width = found.width(target)
        consumers = []
        for name, (at, count) in plan.inputs.items():  # a new unit goes in at `at`, `count` columns wide (flatten)
            path = tuple(_step(model, node, plan.reached) for node in plan.paths[name])
            consumers.append(Consumer(model.get_submodule(name), slice(at - width * count, at), path))
        out.append(Wiring(target, producer, tuple(consumers)))
    return out


def _step(model: nn.Module, node: Any, reached: set[str]) -> nn.Module | Op:
    """One graph node on a consumer path as its module or an :class:`Op` (`reached`: the nodes carrying the
    target's units; a binary op's other operand is the one not among them)."""
    if node.op == "call_module":
        return model.get_submodule(str(node.target))
    if node.target in BINARY or node.op == "call_method" and node.target in BINARY_METHODS:
        other = next((a for a in node.args if getattr(a, "name", None) not in reached), None)
        if getattr(other, "op", None) == "get_attr":  # a parameter: one value (a scalar) or one per channel
            value = operator.attrgetter(str(other.target))(model)
            other = float(value) if value.numel() == 1 else other
        if isinstance(other, int | float):
            return Op(node.target, operand="scalar", value=float(other))
        return Op(node.target, operand="parameter" if getattr(other, "op", None) == "get_attr" else "tensor")
    return Op(node.target, tuple(a for a in node.args[1:] if not hasattr(a, "op")), dict(node.kwargs))


def wiring(model: nn.Module, target: str) -> Wiring:
    """The producer and consumers of widen target `target`; unknown names fail listing the valid ones."""
    if not _inception(model):
        return wirings(model, [target])[0]
    candidates = widen_candidates(model)
    if target not in candidates:
        raise ConfigError(f"unknown widen target {target!r}; valid: {', '.join(candidates)}")
    from harness.models.inception_v1 import ConvReLU
    from harness.models.surgery import consumers

    points = model.hook_points()
    stages = list(model.features.children())

    def stage_of(module: nn.Module) -> int:
        return next(i for i, stage in enumerate(stages) if any(m is module for m in stage.modules()))

    owner = {id(unit.conv): unit for unit in points.values() if isinstance(unit, ConvReLU)}
    pools = {id(points[b.name].pool_reduce.conv): points[b.name].pool for b in model.plan.blocks}
    producer = points[target]
    width = model.channels[target]
    start = stage_of(producer)
    found = []
    for module, offset in consumers(model, target):
        if module is model.fc:  # the head reads the last stage through the average pool
            path = (*stages[start + 1 :], model.avgpool, model.dropout)
        else:
            unit = owner[id(module)]
            path = tuple(stages[start + 1 : stage_of(unit)])
            if id(module) in pools:  # a block's pool branch max-pools its input first
                path += (pools[id(module)],)
            if unit.same:
                path += (SamePad(unit.kernel, unit.stride),)
        found.append(Consumer(module, slice(offset, offset + width), path))
    return Wiring(target, producer.conv, tuple(found))
