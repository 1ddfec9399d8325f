"""Loss gradients at chosen modules over the probe set: the one backward pass that growth criteria share.

Why a helper: GradMax needs d loss / d (consumer pre-activations) next to the inputs its producers read,
SensLI needs d loss / d (block outputs) next to those outputs. Both want the same thing per batch, and
both must leave the model as it was: hooks live for one forward pass, gradients are taken with
`torch.autograd.grad` (no parameter's `.grad` is touched), batch norm and dropout are in eval mode.

The loss is the probe set's mean cross-entropy: each batch contributes sum(CE) / N, so sums over
batches of anything linear in the gradient are expectations over the probe set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.facts.errors import ConfigError
from harness.models.hooks import eval_mode
from harness.probes.base import ProbeContext


@dataclass
class GradBatch:
    """One batch, by module id: `inputs` (first forward input), `outputs` and `grads` (d loss / d output)."""

    inputs: dict[int, torch.Tensor]
    outputs: dict[int, torch.Tensor]
    grads: dict[int, torch.Tensor]
    size: int


def loss_gradients(
    ctx: ProbeContext,
    grad_at: Sequence[nn.Module],
    inputs_of: Sequence[nn.Module] = (),
    max_images: int | None = None,
) -> Iterator[GradBatch]:
    """Per batch of the probe set (its first `max_images` images), what the modules saw and the loss gradient.

    Everything is detached; modules the loss does not depend on get zero gradients.
    Usage: ``for b in loss_gradients(ctx, [net.fc]): b.grads[id(net.fc)]``
    """
    model, probe_set = ctx.model, ctx.probe_set
    total = len(probe_set) if max_images is None else min(len(probe_set), int(max_images))
    if total < 1:
        raise ConfigError(f"gradients need at least one probe image, got {total} (probing.probe_set_size)")
    per_pass = ctx.images_per_pass(*probe_set.images.shape[-2:])
    yield from batch_gradients(model, _first(probe_set.batches(per_pass, device=ctx.device), total), total,
                               grad_at, inputs_of)  # fmt: skip


def batch_gradients(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    total: int,
    grad_at: Sequence[nn.Module],
    inputs_of: Sequence[nn.Module] = (),
) -> Iterator[GradBatch]:
    """`loss_gradients` over any batches (images ready for the model, on its device): the loss is
    sum(CE) / `total` per batch. Why separate: growth inits (:mod:`harness.growth.new_units`) take the same pass
    over fixed training batches instead of the probe set."""
    with eval_mode(model):
        for x, y in batches:
            y = y.long()
            inputs: dict[int, torch.Tensor] = {}
            outputs: dict[int, torch.Tensor] = {}
            handles = []
            try:
                for module in inputs_of:
                    handles.append(module.register_forward_pre_hook(_keep_input(inputs, id(module))))
                for module in grad_at:
                    handles.append(module.register_forward_hook(_keep_output(outputs, id(module))))
                with torch.enable_grad():
                    logits = model(x.detach().requires_grad_(True))  # the graph exists even if every weight is frozen
                    if int(y.max()) >= logits.shape[1]:
                        raise _label_error(int(y.max()), logits.shape[1])
                    loss = F.cross_entropy(logits.float(), y, reduction="sum") / total
                    keys = list(outputs)
                    grads = torch.autograd.grad(loss, [outputs[k] for k in keys], allow_unused=True)
            finally:
                for handle in handles:
                    handle.remove()
            yield GradBatch(
                inputs,
                {k: outputs[k].detach() for k in keys},
                {k: torch.zeros_like(outputs[k]) if g is None else g.detach() for k, g in zip(keys, grads)},
                len(x),
            )


def _first(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], total: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The batches cut to their first `total` images."""
    seen = 0
    for x, y in batches:
        if seen >= total:
            return
        x, y = x[: total - seen], y[: total - seen]
        seen += len(x)
        yield x, y


def _label_error(label: int, outputs: int) -> ConfigError:
    return ConfigError(f"probe labels go up to {label} but the model has {outputs} outputs: "
                       f"loss gradients need a head trained on the probe set's classes")  # fmt: skip


def _keep_input(store: dict[int, torch.Tensor], key: int):
    def hook(module: nn.Module, args: tuple) -> None:
        store[key] = args[0].detach()

    return hook


def _keep_output(store: dict[int, torch.Tensor], key: int):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        store[key] = output

    return hook
