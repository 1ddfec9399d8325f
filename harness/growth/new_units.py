"""The new units of a widened network, by target: where their fan-in and fan-out live, and the loss gradients
that data-driven growth inits (:mod:`harness.growth.gradmax_init`, :mod:`harness.growth.tiny_init`) read.

Why one module: both inits write the same places (the producer's rows for the new units, the consumers'
columns reading them, the per-channel bias before the activation) and read the same statistics (the producer's
input, the consumers' inputs and the loss gradient at the consumers' outputs, on ``model.widen_batches`` fixed
training batches). The wiring itself comes from :func:`harness.models.consumers.wirings`, so every model and
target ``model.widen`` accepts is served; B's row and column order is the one of
:func:`harness.probes.gradmax.gradmax_rows` (rows: each consumer's ``weight[:, unit]`` flattened; columns: the
producer's ``weight[unit]`` flattened).

ReLU's slope at 0 is 0 in PyTorch, so a unit with zero fan-in and zero bias would get no gradient at all.
Function-preserving inits give the new unit a tiny positive pre-activation, ``ALIVE_BIAS`` (1e-8), written into
the per-channel bias that comes right before its activation: the batch norm's bias when there is one (a conv
bias would be removed by batch norm's mean in training mode), else the producer's bias. The unit then outputs
1e-8 everywhere (a logit change far below 1e-5) and sits on ReLU's slope-1 side.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.facts.errors import ConfigError
from harness.models.consumers import Wiring, wirings
from harness.models.hooks import eval_mode
from harness.probes.gradients import batch_gradients

ALIVE_BIAS = 1e-8  # a zero-fan-in unit's pre-activation: on ReLU's slope-1 side, invisible in the logits
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class NewUnits:
    """One widen target's new units: the wiring and the unit indices (the last ones, as widen appends them)."""

    wiring: Wiring
    units: list[int]
    bias: torch.Tensor | None  # the per-channel bias before the activation (a parameter), or None

    @property
    def target(self) -> str:
        return self.wiring.target

    def columns(self, consumer_index: int, unit: int) -> slice:
        """The input columns of consumer ``consumer_index`` that read ``unit`` (H*W of them after a flatten)."""
        c = self.wiring.consumers[consumer_index]
        width = _width(self.wiring.producer)
        count = (c.channels.stop - c.channels.start) // width
        return slice(c.channels.start + unit * count, c.channels.start + (unit + 1) * count)

    def fan_out(self, unit: int) -> torch.Tensor:
        """The unit's outgoing weights, flattened in B's row order."""
        parts = []
        for i, c in enumerate(self.wiring.consumers):
            parts.append(c.module.weight.detach()[:, self.columns(i, unit)].reshape(-1))  # (out, kernel offset)
        return torch.cat(parts).float()

    @torch.no_grad()
    def set_fan_out(self, unit: int, vector: torch.Tensor) -> None:
        at = 0
        for i, c in enumerate(self.wiring.consumers):
            w = c.module.weight
            cols = self.columns(i, unit)
            block = w[:, cols]
            w[:, cols] = vector[at : at + block.numel()].reshape(block.shape).to(w.dtype)
            at += block.numel()

    def fan_in(self, unit: int) -> torch.Tensor:
        return self.wiring.producer.weight.detach()[unit].reshape(-1).float()

    @torch.no_grad()
    def set_fan_in(self, unit: int, vector: torch.Tensor) -> None:
        w = self.wiring.producer.weight
        w[unit] = vector.reshape(w.shape[1:]).to(w.dtype)

    @torch.no_grad()
    def set_bias(self, unit: int, value: float) -> None:
        if self.bias is not None:
            self.bias[unit] = value

    def mean_old(self, which: str) -> float:
        """Mean norm of the existing units' fan-in or fan-out (1.0 when they are all zero)."""
        old = [u for u in range(_width(self.wiring.producer)) if u not in set(self.units)]
        read = self.fan_in if which == "in" else self.fan_out
        norm = float(torch.stack([read(u).norm() for u in old]).mean()) if old else 0.0
        return norm if norm > 0 else 1.0


def _width(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def bias_before_activation(net: nn.Module, w: Wiring) -> torch.Tensor | None:
    """The per-channel bias right before the target's activation (see the module docstring)."""
    points = net.hook_points() if hasattr(net, "hook_points") and hasattr(net, "plan") else {}
    unit = points.get(w.target)
    if unit is not None and isinstance(getattr(unit, "bn", None), nn.BatchNorm2d):
        return unit.bn.bias
    first = w.consumers[0].path[0] if w.consumers and w.consumers[0].path else None
    if isinstance(first, nn.BatchNorm1d | nn.BatchNorm2d) and first.num_features == _width(w.producer):
        return first.bias
    return w.producer.bias


def new_units(net: nn.Module, added: Mapping[str, Sequence[int]], image_size: int, init: str) -> list[NewUnits]:
    """The :class:`NewUnits` of each target in ``added`` (target -> unit indices); a target whose consumer path
    is not linear in a new unit (a squeeze-excitation gate, a depthwise conv) fails with one line."""
    found = []
    for w in wirings(net, list(added), image_size=image_size):
        for c in w.consumers:
            why = _nonlinear_step(c.path)
            if why:
                raise ConfigError(f"model.widen_init={init} cannot serve model.widen.{w.target}: its new units reach "
                                  f"{why}; use model.widen_init=zero or net2net for it")  # fmt: skip
        found.append(NewUnits(w, list(added[w.target]), bias_before_activation(net, w)))
    return found


def _nonlinear_step(path: Sequence[object]) -> str | None:
    for step in path:
        if isinstance(step, nn.Conv2d) and step.groups > 1:
            return f"a depthwise conv (groups={step.groups}) that gives them fresh filters"
        if getattr(step, "operand", None) == "tensor" and "mul" in getattr(step, "name", ""):
            return "a product with another activation (a squeeze-excitation gate)"
    return None


def prepare(x: torch.Tensor) -> torch.Tensor:
    """Images as the training module feeds them (uint8 -> float in [0, 1])."""
    return x.float().div(255.0) if x.dtype == torch.uint8 else x


@dataclass
class Pass:
    """One batch: producer inputs, consumer inputs and d loss / d consumer outputs, by module id."""

    inputs: dict[int, torch.Tensor]
    grads: dict[int, torch.Tensor]


def passes(net: nn.Module, batches: Sequence[Batch], wired: Sequence[Wiring]) -> Iterator[Pass]:
    """Loss gradients at the consumers of ``wired`` (eval mode; the loss is the mean cross-entropy over all
    batches), by :func:`harness.probes.gradients.batch_gradients`, the growth probes' own pass. Wirings, not
    :class:`NewUnits`: the oracle's signals read the same statistics on a base network that has no new units."""
    total = sum(len(y) for _, y in batches)
    producers = {id(w.producer): w.producer for w in wired}
    consumers = {id(c.module): c.module for w in wired for c in w.consumers}
    device = next(net.parameters()).device
    ready = ((prepare(x.to(device)), y.to(device)) for x, y in batches)
    for b in batch_gradients(net, ready, total, list(consumers.values()), list({**producers, **consumers}.values())):
        yield Pass(b.inputs, b.grads)


class FromStage(nn.Module):
    """The logits of ``net`` given the input of its features stage ``stage`` (``net.forward_from``)."""

    def __init__(self, net: nn.Module, stage: str) -> None:
        super().__init__()
        self.net, self.stage = net, stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_from(self.stage, x)


@torch.no_grad()
def resumed(net: nn.Module, batches: Sequence[Batch], targets: Sequence[str]) -> tuple[nn.Module, list[Batch]]:
    """(a module computing ``net``'s logits from the first stage holding a target, that stage's inputs for
    ``batches``); ``(net, batches)`` unchanged for a model without ``resume_point``/``forward_from``.

    Why: a growth init's passes (two gradient passes and the line search's ~25 loss passes in TINY) change only the
    targets and what reads them, so everything before the targets' first stage gives the same tensors every pass.
    Computing it once made tier 0 (:mod:`harness.oracle.tier0`) faster, with the same numbers: the stage inputs are
    what the full forward computes, in the same batches (eval mode)."""
    if not (callable(getattr(net, "resume_point", None)) and callable(getattr(net, "forward_from", None))):
        return net, list(batches)
    stages = dict(net.resume_point(t) for t in targets)
    order: list[str] = []
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in stages}
    handles = [module.register_forward_pre_hook(_record(name, order, inputs)) for name, module in stages.items()]
    device = next(net.parameters()).device
    try:
        with eval_mode(net):
            for x, _ in batches:
                net(prepare(x.to(device)))
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        return net, list(batches)
    first = order[0]
    return FromStage(net, first), [(a, y) for a, (_, y) in zip(inputs[first], batches)]


def _record(name: str, order: list[str], inputs: dict[str, list[torch.Tensor]]):
    def hook(module: nn.Module, args: tuple) -> None:
        if name not in order:
            order.append(name)
        inputs[name].append(args[0].detach())

    return hook


@torch.no_grad()
def mean_loss(net: nn.Module, batches: Sequence[Batch]) -> float:
    """Mean cross-entropy over the fixed batches, eval mode (the line search's and the record's loss)."""
    device = next(net.parameters()).device
    total, n = 0.0, 0
    with eval_mode(net):
        for x, y in batches:
            total += float(F.cross_entropy(net(prepare(x.to(device))).float(), y.to(device).long(), reduction="sum"))
            n += len(y)
    return total / max(n, 1)
