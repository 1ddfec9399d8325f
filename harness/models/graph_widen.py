"""Widen any conv or linear of any traceable model, keeping its function: ``+model.widen.layer2.0.conv1=8``.

The new output units get fresh incoming weights and ZERO outgoing weights, so the network computes exactly
what it did (max |delta logit| 0 up to float rounding) and training decides what the new units become.

Who reads the new channels is found on the traced graph (``torch.fx.symbolic_trace`` plus ``ShapeProp`` on one
blank image), not by rules per architecture: the channels are followed through per-channel ops (batch norm,
activations, pooling, dropout, stochastic depth), ``flatten`` (a linear after it reads each channel H*W times),
``permute`` (ConvNeXt's channels-last linears) and ``cat`` (an offset), to the convs/linears that consume them.
Coupled channels are handled where that keeps the function:

- a depthwise conv on the new channels grows with them (new filters), and the channels flow on through it;
- a squeeze-excitation gate (``x * scale``, the scale from a conv/linear of the same channels) grows its
  last conv too, so the product has the new channels on both sides;
- a residual add would need every producer of the residual stream widened at once (stem, every block's last
  conv, downsample): refused with an error naming that group; so are grouped convs and norms that mix
  channels (LayerNorm/GroupNorm over the channel axis would renormalise the old channels).

Why torch.fx rather than torch-pruning's ``DependencyGraph``: torch-pruning couples channels for *removal*
(and its grouping rules are the library's, not ours to check); widening needs the same graph walk plus
insertion offsets, zero-initialised consumers and refusal messages of our own, and torch.fx is in PyTorch
itself (no new dependency, no version coupling with a pruning library). The edit is applied to the model's
own modules (the result keeps its class and module names), the graph is only read.

Which convs/linears of a model this accepts (the growth probes' and harness-suggest's widen targets) is asked of
this planner once per model, on one trace: :func:`harness.models.consumers.widenable`.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from harness.facts.errors import ConfigError

# Modules that act on each channel on its own: the new channels pass through unchanged in meaning.
_PER_CHANNEL = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)  # fmt: skip
_PER_CHANNEL_NAMES = {"StochasticDepth", "DropPath", "DropBlock2d"}
_FUNCTIONS = {
    torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.relu6, nn.functional.gelu,
    nn.functional.silu, nn.functional.hardswish, nn.functional.hardsigmoid, nn.functional.sigmoid,
    nn.functional.dropout, nn.functional.adaptive_avg_pool2d, nn.functional.adaptive_max_pool2d,
    nn.functional.max_pool2d, nn.functional.avg_pool2d, nn.functional.leaky_relu,
}  # fmt: skip
_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "to", "type_as"}
BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, torch.add, torch.mul}
BINARY_METHODS = {"add", "add_", "mul", "mul_"}


@dataclass
class WidenPlan:
    """What to change: producers' new outputs, consumers' new inputs (insert index, count), norms, parameters."""

    n: int
    outputs: dict[str, int] = field(default_factory=dict)  # module -> new output units (appended)
    inputs: dict[str, tuple[int, int]] = field(default_factory=dict)  # module -> (insert at, count)
    depthwise: set[str] = field(default_factory=set)
    norms: dict[str, int] = field(default_factory=dict)  # batch norm -> insert at
    params: dict[str, tuple[int, int]] = field(default_factory=dict)  # parameter -> (axis, insert at)
    paths: dict[str, tuple[fx.Node, ...]] = field(default_factory=dict)  # consumer -> graph nodes between
    reached: set[str] = field(default_factory=set)  # names of the graph nodes the new channels pass


def trace(net: nn.Module, image_size: int) -> fx.GraphModule:
    try:
        graph = fx.symbolic_trace(net)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"model.widen needs a model torch.fx can trace; {type(net).__name__} is not: "
                          f"{type(err).__name__}: {first}") from None  # fmt: skip
    param = next(net.parameters(), None)
    x = torch.zeros(2, 3, image_size, image_size, device=param.device if param is not None else None)
    modes = {m: m.training for m in net.modules()}
    try:
        graph.eval()
        with torch.no_grad():
            ShapeProp(graph).propagate(x)
    finally:
        for module, training in modes.items():
            module.training = training
    return graph


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class _Walker:
    """Follows new channels from one producer through the graph, filling a :class:`WidenPlan` or refusing."""

    def __init__(self, graph: fx.GraphModule, target: str, n: int, modules: Mapping[str, nn.Module] | None = None):
        self.graph, self.target, self.plan = graph, target, WidenPlan(n)
        self.modules = {**dict(graph.named_modules()), **(modules or {})}
        self.seen: set[tuple[str, int]] = set()
        self.trail: list[fx.Node] = []  # the nodes from the producer to the one being followed

    def refuse(self, node: fx.Node, why: str) -> None:
        what = node.target if node.op == "call_module" else getattr(node.target, "__name__", node.target)
        raise ConfigError(f"model.widen.{self.target}: cannot widen: its new channels reach {node.name} ({what}): "
                          f"{why}")  # fmt: skip

    def walk(self, node: fx.Node, axis: int, pos: int, k: int) -> None:
        """New channels sit in ``node``'s output along ``axis`` at index ``pos``, each ``k`` elements wide."""
        if (node.name, axis) in self.seen:
            return
        self.seen.add((node.name, axis))
        self.plan.reached.add(node.name)
        self.trail.append(node)
        try:
            for user in list(node.users):
                self.step(node, user, axis, pos, k)
        finally:
            self.trail.pop()

    def consumer(self, name: str, at: int, count: int) -> None:
        self.plan.inputs[name] = (at, count)
        self.plan.paths[name] = tuple(self.trail[1:])

    def step(self, node: fx.Node, user: fx.Node, axis: int, pos: int, k: int) -> None:
        shape = _shape(node)
        ndim = len(shape) if shape else 4
        axis = axis % ndim
        if user.op == "output":
            self.refuse(user, "the model's output (a head cannot grow without changing the output)")
        if user.op == "call_module":
            return self.module(node, user, axis, pos, k, ndim)
        fn = user.target
        if user.op == "call_method" and fn in ("size", "dim") or fn in (getattr, len):
            return None  # a shape query
        if user.op == "call_function" and fn in _FUNCTIONS or user.op == "call_method" and fn in _METHODS:
            return self.walk(user, axis, pos, k)
        if fn in (torch.flatten, "flatten", "view", "reshape"):
            return self.flatten(node, user, axis, pos, k)
        if fn in (torch.permute, "permute"):
            dims = user.args[1:] if user.op == "call_method" else user.args[1]
            dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], list | tuple) else list(dims)
            return self.walk(user, [d % ndim for d in dims].index(axis), pos, k)
        if fn in (torch.mean, torch.sum, torch.amax, "mean", "sum", "amax"):
            dims = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim")
            dims = [d % ndim for d in ([dims] if isinstance(dims, int) else list(dims or []))]
            if not dims or axis in dims:
                self.refuse(user, "a reduction over the channel axis")
            keep = user.kwargs.get("keepdim", user.args[2] if len(user.args) > 2 else False)
            return self.walk(user, axis if keep else axis - sum(d < axis for d in dims), pos, k)
        if fn is nn.functional.batch_norm:  # a batch norm module traced through (timm's BatchNormAct2d)
            stats = user.args[1] if len(user.args) > 1 else user.kwargs.get("running_mean")
            owner = str(getattr(stats, "target", "")).rpartition(".")[0]
            if axis != 1 or k != 1 or not isinstance(self.modules.get(owner), nn.modules.batchnorm._BatchNorm):
                self.refuse(user, "a batch norm whose module cannot be found")
            self.plan.norms[owner] = pos
            return self.walk(user, axis, pos, k)
        if fn is torch.cat:
            return self.cat(node, user, axis, pos, k)
        if fn in BINARY or user.op == "call_method" and fn in BINARY_METHODS:
            return self.binary(node, user, axis, pos, k)
        self.refuse(user, f"an operation the channel walk does not know ({user.op} {getattr(fn, '__name__', fn)})")

    def module(self, node: fx.Node, user: fx.Node, axis: int, pos: int, k: int, ndim: int) -> None:
        name, module = str(user.target), self.modules[str(user.target)]
        n = self.plan.n
        if isinstance(module, nn.Conv2d):
            if axis != 1:
                self.refuse(user, "a conv reading another axis than the channels")
            if module.groups == 1:
                return self.consumer(name, pos * k, n * k)
            if module.groups == module.in_channels == module.out_channels and k == 1:
                self.plan.depthwise.add(name)  # depthwise: the new channels get filters of their own
                return self.walk(user, 1, pos, 1)
            self.refuse(user, f"a grouped conv ({name}, groups={module.groups}): its channel groups are coupled")
        if isinstance(module, nn.Linear):
            if axis != ndim - 1:
                self.refuse(user, "a linear reading another axis than the new channels'")
            return self.consumer(name, pos * k, n * k)
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            if axis != 1 or k != 1:
                self.refuse(user, "a batch norm over another axis")
            self.plan.norms[name] = pos
            return self.walk(user, axis, pos, k)
        if isinstance(module, nn.Flatten):
            return self.flatten(node, user, axis, pos, k)
        if isinstance(module, _PER_CHANNEL) or type(module).__name__ in _PER_CHANNEL_NAMES:
            return self.walk(user, axis, pos, k)
        why = "it normalises across channels (widening would change the old channels)" if isinstance(
            module, nn.LayerNorm | nn.GroupNorm) else "a module the channel walk does not know"  # fmt: skip
        self.refuse(user, f"{type(module).__name__} {name}: {why}")

    def flatten(self, node: fx.Node, user: fx.Node, axis: int, pos: int, k: int) -> None:
        before, after = _shape(node), _shape(user)
        if not before or not after or axis != 1 or len(after) != 2 or after[0] != before[0]:
            self.refuse(user, "a reshape the channel walk cannot follow (only flattening [N, C, ...] to [N, C*...])")
        return self.walk(user, 1, pos, k * math.prod(before[2:]))

    def cat(self, node: fx.Node, user: fx.Node, axis: int, pos: int, k: int) -> None:
        parts = user.args[0]
        dim = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim", 0)
        ndim = len(_shape(node) or (0,) * 4)
        if dim % ndim != axis or k != 1:
            self.refuse(user, "a concatenation along another axis than the channels")
        offset = sum(_shape(p)[axis] for p in parts[: list(parts).index(node)])
        return self.walk(user, axis, pos + offset, k)

    def binary(self, node: fx.Node, user: fx.Node, axis: int, pos: int, k: int) -> None:
        other = next((a for a in user.args if a is not node), None)
        shape = _shape(other)
        if not isinstance(other, fx.Node) or shape is None or len(shape) <= axis or shape[axis] == 1:
            return self.walk(user, axis, pos, k)  # a scalar or a broadcast: per channel
        if other.op == "get_attr":  # e.g. ConvNeXt's layer scale: one value per channel
            self.plan.params[str(other.target)] = (axis - len(_shape(node)) + len(shape), pos)
            return self.walk(user, axis, pos, k)
        op = getattr(user.target, "__name__", str(user.target))
        source = _producer(other, self.modules)
        if "mul" in op and source is not None and pos == _shape(node)[axis] and k == 1 and source != self.target:
            self.plan.outputs[source] = self.plan.n  # a gate (squeeze-excitation): its last conv grows too
            self.seen.add((other.name, axis))
            return self.walk(user, axis, pos, k)
        group = sorted({self.target, *_residual_group(user, self.modules)})
        self.refuse(user, f"a residual {op}: the channels are coupled with {', '.join(group)}; widen a layer "
                          "inside a block instead (e.g. the block's first conv)")  # fmt: skip


def _producer(node: fx.Node, modules: Mapping[str, nn.Module]) -> str | None:
    """The conv/linear that produced ``node``, through per-channel ops; None when there is none."""
    while isinstance(node, fx.Node):
        if node.op == "call_module":
            module = modules[str(node.target)]
            if isinstance(module, nn.Conv2d | nn.Linear):
                return str(node.target) if getattr(module, "groups", 1) == 1 else None
            if not (isinstance(module, (*_PER_CHANNEL, nn.BatchNorm2d)) or type(module).__name__ in _PER_CHANNEL_NAMES):
                return None
        elif not (node.op == "call_function" and node.target in _FUNCTIONS or node.op == "call_method"
                  and node.target in _METHODS):  # fmt: skip
            return None
        node = node.args[0] if node.args else None
    return None


def _residual_group(add: fx.Node, modules: Mapping[str, nn.Module], limit: int = 64) -> list[str]:
    """Convs/linears whose outputs meet in residual adds connected to ``add`` (the residual stream's writers)."""
    found: list[str] = []
    stack, seen = [add], set()
    while stack and len(found) < limit:
        node = stack.pop()
        if not isinstance(node, fx.Node) or node.name in seen:
            continue
        seen.add(node.name)
        if node.op == "call_module" and isinstance(modules[str(node.target)], nn.Conv2d | nn.Linear):
            found.append(str(node.target))
            continue
        if node.op in ("placeholder", "get_attr"):
            continue
        stack.extend(a for a in node.args if isinstance(a, fx.Node))
        if node.target in BINARY or node.target in BINARY_METHODS:  # later blocks' adds on the same stream
            stack.extend(_next_adds(node, modules))
    return found


def _is_add(node: fx.Node) -> bool:
    return node.target in (operator.add, operator.iadd, torch.add) or node.op == "call_method" and node.target in (
        "add", "add_")  # fmt: skip


def _next_adds(node: fx.Node, modules: Mapping[str, nn.Module]) -> list[fx.Node]:
    """Adds reached from ``node`` through per-channel ops (the next residual blocks on the same stream)."""
    out, stack = [], list(node.users)
    while stack:
        user = stack.pop()
        if _is_add(user):
            out.append(user)
        elif user.op == "call_function" and user.target in _FUNCTIONS or user.op == "call_method" and user.target in (
            _METHODS
        ) or user.op == "call_module" and isinstance(modules[str(user.target)], _PER_CHANNEL):  # fmt: skip
            stack.extend(user.users)
    return out


def plan_widen(net: nn.Module, target: str, n: int, image_size: int = 64) -> WidenPlan:
    """Which modules change when ``target`` gets ``n`` more output units (ConfigError when it cannot be done)."""
    modules = dict(net.named_modules())
    module = modules.get(target)
    if not isinstance(module, nn.Conv2d | nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups != 1):
        convs = [p for p, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear) and getattr(m, "groups", 1) == 1]
        shown = ", ".join(convs[:40]) + (f" (and {len(convs) - 40} more)" if len(convs) > 40 else "")
        what = "not a module" if module is None else f"a {type(module).__name__}, not an ungrouped conv or linear"
        raise ConfigError(f"model.widen.{target}: {what}; valid: {shown}")
    if int(n) != n or n < 1:
        raise ConfigError(f"model.widen.{target}={n}: only adding units (an integer >= 1) works on this model")
    return plan_traced(trace(net, image_size), modules, target, int(n))


def plan_traced(graph: fx.GraphModule, modules: Mapping[str, nn.Module], target: str, n: int) -> WidenPlan:
    """:func:`plan_widen` on a graph traced already (:func:`trace`): one trace serves every target."""
    walker = _Walker(graph, target, n, modules)
    walker.plan.outputs[target] = n
    nodes = [node for node in graph.graph.nodes if node.op == "call_module" and node.target == target]
    if not nodes:
        raise ConfigError(f"model.widen.{target}: the module is never called in the traced forward pass")
    for node in nodes:
        walker.walk(node, 1 if isinstance(modules[target], nn.Conv2d) else -1, module_width(modules[target]), 1)
    for source in [s for s in walker.plan.outputs if s != target]:  # gates found on the way: their other readers
        for node in [x for x in graph.graph.nodes if x.op == "call_module" and x.target == source]:
            walker.walk(node, 1 if isinstance(modules[source], nn.Conv2d) else -1, module_width(modules[source]), 1)
    return walker.plan


def module_width(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _insert(t: torch.Tensor, dim: int, at: int, new: torch.Tensor) -> torch.Tensor:
    return torch.cat([t.narrow(dim, 0, at), new, t.narrow(dim, at, t.shape[dim] - at)], dim)


def _fresh_rows(weight: torch.Tensor, n: int) -> torch.Tensor:
    """New units' incoming weights: normal with the layer's own weight scale (zero when the layer is all zero)."""
    std = float(weight.detach().float().std()) if weight.numel() > 1 else 0.0
    return torch.randn(n, *weight.shape[1:], dtype=weight.dtype, device=weight.device) * (std if math.isfinite(std)
                                                                                            else 0.0)  # fmt: skip


def _apply(net: nn.Module, plan: WidenPlan) -> None:
    n = plan.n
    with torch.no_grad():
        for name, extra in plan.outputs.items():
            m = net.get_submodule(name)
            m.weight = nn.Parameter(torch.cat([m.weight, _fresh_rows(m.weight, extra)]))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.cat([m.bias, m.bias.new_zeros(extra)]))
            if isinstance(m, nn.Conv2d):
                m.out_channels += extra
            else:
                m.out_features += extra
        for name in plan.depthwise:
            m = net.get_submodule(name)
            m.weight = nn.Parameter(torch.cat([m.weight, _fresh_rows(m.weight, n)]))
            if m.bias is not None:
                m.bias = nn.Parameter(torch.cat([m.bias, m.bias.new_zeros(n)]))
            m.in_channels += n
            m.out_channels += n
            m.groups += n
        for name, (at, count) in plan.inputs.items():
            m = net.get_submodule(name)
            zeros = m.weight.new_zeros(m.weight.shape[0], count, *m.weight.shape[2:])
            m.weight = nn.Parameter(_insert(m.weight, 1, at, zeros))  # zero: the old outputs read nothing new
            if isinstance(m, nn.Conv2d):
                m.in_channels += count
            else:
                m.in_features += count
        for name, at in plan.norms.items():
            m = net.get_submodule(name)
            if m.weight is not None:
                m.weight = nn.Parameter(_insert(m.weight, 0, at, m.weight.new_ones(n)))
                m.bias = nn.Parameter(_insert(m.bias, 0, at, m.bias.new_zeros(n)))
            if m.running_mean is not None:
                m.running_mean = _insert(m.running_mean, 0, at, m.running_mean.new_zeros(n))
                m.running_var = _insert(m.running_var, 0, at, m.running_var.new_ones(n))
            m.num_features += n
        for path, (axis, at) in plan.params.items():
            owner, _, attr = path.rpartition(".")
            holder = net.get_submodule(owner) if owner else net
            p = getattr(holder, attr)
            shape = list(p.shape)
            shape[axis] = n
            setattr(holder, attr, nn.Parameter(_insert(p.data, axis % p.dim(), at, p.new_ones(shape))))


def widen_modules(net: nn.Module, widen: Mapping[str, int], image_size: int = 64) -> nn.Module:
    """A copy of ``net`` with ``n`` more output units in each named conv/linear, computing the same function.

    Usage: ``widen_modules(torchvision.models.resnet18(), {"layer2.0.conv1": 8})``
    """
    out = copy.deepcopy(net)
    for target, n in widen.items():
        if n:
            _apply(out, plan_widen(out, target, n, image_size))
    return out
