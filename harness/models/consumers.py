"""Where a layer's units come from and where they go: the wiring that growth criteria and growth edits read.

Why: "where to grow" criteria (GradMax, SensLI, the oracle's candidates) ask, for a candidate layer, which
convolution makes its units (its weight is the fan-in of a new unit), which layers read them (their new
input columns are the fan-out), at which input channels, and through which pools or normalisations. That is
a fact about the model, not about any one criterion, so it is written once here, by layer name.

InceptionV1 is wired from its channel plan (:mod:`harness.models.edits`) and the consumer list that weight
surgery already uses (:func:`harness.models.surgery.consumers`); another model family adds its own branch to
:func:`wiring`, :func:`widen_candidates` and :func:`insert_positions`. For now any other model gets a
ConfigError saying so.

Usage:
    w = wiring(net, "mixed3a_5x5")
    w.producer            # the Conv2d computing mixed3a_5x5's units (reads w.producer's input)
    [(c.module, c.channels, c.path) for c in w.consumers]   # mixed3b's four input convs, channels 64:80, ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.errors import ConfigError


class SamePad(nn.Module):
    """TF "SAME" padding as a module, for a consumer whose unit pads its input before the convolution."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from harness.models.inception_v1 import pad_same

        return pad_same(x, self.kernel, self.stride)


@dataclass(frozen=True)
class Consumer:
    """A layer reading a target's units: `module` (Conv2d or Linear) sees them at input `channels`, after `path`.

    `path` is the chain of modules between the target's (post-activation) output and `module`'s input,
    in order: max pools, local response norm, the head's average pool; channel concatenation is implied
    by `channels`. An empty path means `module` reads the target's output directly.
    """

    module: nn.Module
    channels: slice
    path: tuple[nn.Module, ...] = ()


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


def widen_candidates(model: nn.Module) -> list[str]:
    """Every layer a widen edit may grow, in forward order (InceptionV1: stem layers and every branch)."""
    if not _inception(model):
        raise _unsupported(model, "cannot list widen targets")
    from harness.models.edits import widen_targets

    return widen_targets(model.config["insert"], model.config["last_layer"])


def insert_positions(model: nn.Module) -> list[str]:
    """Layers after which a block can be inserted, in forward order (InceptionV1: every mixed block, inserted
    ones included; an insert after a name goes right behind it, before any stride-2 pool)."""
    if not _inception(model):
        raise _unsupported(model, "cannot list insert positions")
    return [block.name for block in model.plan.blocks]


def wiring(model: nn.Module, target: str) -> Wiring:
    """The producer and consumers of widen target `target`; unknown names fail listing the valid ones."""
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
