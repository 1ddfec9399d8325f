"""Capture activations by layer name; every hook is removed when the block ends, errors included.

Why our own (not captum's LayerActivation or TransformerLens): probes address layers by Lucid name
(`mixed3b_5x5`) or, for any other model, by dotted module path, need several layers from ONE forward
pass (capture once, share across probes), and must never leave a hook behind on the user's model.
They live with the models because surgery and freezing use them too; names are resolved by
:func:`harness.models.names.resolve`. Probes import them from here.

Usage:
    out, cache = run_with_cache(net, images, names=["mixed3b", "mixed3b_5x5"])
    with capture(net, ["mixed3b"]) as cache:
        net(images)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from harness.models.names import resolve


@contextmanager
def capture(
    model: nn.Module, names: Sequence[str], detach: bool = True, pre_relu: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named layer during forward passes inside the block.

    Each forward pass overwrites the previous value. `pre_relu=True` records the input of the layer's
    final ReLU instead (our ConvReLU units; modules without an `act` child keep their output), which
    feature visualisation needs to push units that are off.
    """
    modules = resolve(model, names)
    cache: dict[str, torch.Tensor] = {}
    handles = []

    def save(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            value = args[0] if pre_relu and module is not modules[name] else output
            cache[name] = value.detach() if detach else value

        return hook

    try:
        for name, module in modules.items():
            act = getattr(module, "act", None) if pre_relu else None
            handles.append((act if isinstance(act, nn.Module) else module).register_forward_hook(save(name)))
        yield cache
    finally:
        for handle in handles:
            handle.remove()


class _Reached(Exception):
    """Raised by a hook to end a forward pass once every wanted layer has produced its output."""


def forward_until(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> None:
    """`model(x)`, stopped as soon as every layer in `names` has run (call inside `capture(model, names)`).

    Why: a probe reading `mixed3a` of the full InceptionV1 does not need mixed4b-5b and the head; at 224 px
    that is most of the forward pass. `capture`'s hooks are registered first, so they fire first.
    """
    modules = resolve(model, names)
    seen: set[str] = set()

    def reached(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen.add(name)
            if len(seen) == len(modules):
                raise _Reached

        return hook

    handles = [module.register_forward_hook(reached(name)) for name, module in modules.items()]
    try:
        model(x)
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()


def run_with_cache(
    model: nn.Module, x: torch.Tensor, names: Sequence[str], pre_relu: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass returning (output, {name: activation}) with no grad and no hooks left behind."""
    with torch.no_grad(), capture(model, names, pre_relu=pre_relu) as cache:
        out = model(x)
    return out, dict(cache)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode and restore each submodule's own mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.train(training)
