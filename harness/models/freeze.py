"""Freeze what a loaded network already knows; train only the units a widen edit added.

Why not just zero the old slices' gradients: AdamW's decoupled weight decay (``p -= lr * wd * p``)
moves every parameter that has a gradient, masked or not, and momentum moves them too. So the
old values live in a buffer and each partly-new tensor is a parametrization,
``weight = where(keep, old, trainable)``: the gradient reaching old entries is exactly zero (a
gradient mask by construction), and whatever any optimizer does to the unused old entries of the
raw tensor never reaches the network. Tensors with no new entries get ``requires_grad=False``
(optimizers then skip them entirely, weight decay included). Batch norm running statistics of old
channels are restored after every training forward. The state dict keeps the plain keys
(``...conv.weight`` holding the effective values), so checkpoints load into an unfrozen network.

What trains: the new units' incoming weights, biases and batch-norm affine entries, their outgoing
weights (the input slices of every consumer: without them zero-initialised units could never
learn), and every parameter of the modules named in ``train_also`` (e.g. ``fc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.facts.errors import ConfigError
from harness.models.names import resolve
from harness.models.surgery import consumers


class KeepOld(nn.Module):
    """Parametrization: entries where ``keep`` is True always read their frozen value.

    Usage: ``parametrize.register_parametrization(conv, "weight", KeepOld(conv.weight, keep))``
    """

    def __init__(self, value: torch.Tensor, keep: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("old", torch.where(keep, value.detach(), 0.0), persistent=False)
        self.register_buffer("keep", keep.clone(), persistent=False)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.where(self.keep, self.old, raw)


class KeepOldStatsBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose running statistics of the ``keep`` channels never change (new channels still learn).

    Usage: ``KeepOldStatsBatchNorm2d.convert(bn, keep)`` (in place)
    """

    @classmethod
    def convert(cls, bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
        bn.__class__ = cls
        bn.register_buffer("keep_stats", keep.clone(), persistent=False)
        bn.register_buffer("old_mean", bn.running_mean.detach().clone(), persistent=False)
        bn.register_buffer("old_var", bn.running_var.detach().clone(), persistent=False)
        return bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training and self.running_mean is not None:
            # New tensors, not in-place copies: autograd saved the updated ones for this forward's backward.
            with torch.no_grad():
                self.running_mean = torch.where(self.keep_stats, self.old_mean, self.running_mean)
                self.running_var = torch.where(self.keep_stats, self.old_var, self.running_var)
        return out


def _save_plain(name: str):
    """State-dict post hook: the effective tensor under the plain key, not ``parametrizations.<name>.original``."""

    def hook(module: nn.Module, state: dict, prefix: str, local_metadata) -> None:
        state.pop(f"{prefix}parametrizations.{name}.original", None)
        state[f"{prefix}{name}"] = getattr(module, name).detach()

    return hook


def _load_plain(name: str):
    """Load pre hook: a plain ``<name>`` becomes the raw tensor and the new frozen values of the old entries."""

    def hook(module: nn.Module, state: dict, prefix: str, *args) -> None:
        if f"{prefix}{name}" in state:
            value = state.pop(f"{prefix}{name}")
            state[f"{prefix}parametrizations.{name}.original"] = value
            keep_old = module.parametrizations[name][0]
            keep_old.old.copy_(torch.where(keep_old.keep, value.to(keep_old.old), 0.0))

    return hook


def _trainable_masks(
    net: nn.Module, new_units: Mapping[str, Sequence[int]], train_also: Sequence[str]
) -> dict[nn.Parameter, torch.Tensor]:
    masks = {p: torch.zeros_like(p, dtype=torch.bool) for p in net.parameters()}
    points = net.hook_points()
    for name, units in new_units.items():
        idx = torch.tensor(list(units), dtype=torch.long)
        unit = points[name]
        for p in (unit.conv.weight, unit.conv.bias, getattr(unit.bn, "weight", None), getattr(unit.bn, "bias", None)):
            if p is not None:
                masks[p][idx] = True
        for module, offset in consumers(net, name):
            masks[module.weight][:, offset + idx] = True
    for module in resolve(net, list(train_also)).values():
        for p in module.parameters():
            masks[p][...] = True
    return masks


def freeze_old(
    net: nn.Module, new_units: Mapping[str, Sequence[int]], train_also: Sequence[str] = ()
) -> dict[str, int]:
    """Make only the new units (and ``train_also`` modules) trainable, in place; returns element counts.

    Usage: ``freeze_old(wide, added_units(wide, {"mixed3b_5x5": 8}), train_also=["fc"])``
    """
    masks = _trainable_masks(net, new_units, train_also)
    counts = {"trainable": int(sum(int(m.sum()) for m in masks.values())), "frozen": 0}
    counts["frozen"] = int(sum(m.numel() for m in masks.values())) - counts["trainable"]
    if counts["trainable"] == 0:
        raise ConfigError("model.freeze_old=true leaves nothing to train: widen a layer or list modules in "
                          "model.train_also")  # fmt: skip
    # Old channels' running statistics stay (converted first: parametrizing swaps the module's class again).
    for bn in list(net.modules()):
        if isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.weight is not None:
            if not bool(masks[bn.weight].all()):
                KeepOldStatsBatchNorm2d.convert(bn, ~masks[bn.weight])
    for module in list(net.modules()):
        for name, param in list(module.named_parameters(recurse=False)):
            train = masks[param]
            if bool(train.all()):
                continue
            if not bool(train.any()):
                param.requires_grad_(False)
                continue
            parametrize.register_parametrization(module, name, KeepOld(param, ~train))
            module.register_state_dict_post_hook(_save_plain(name))
            module.register_load_state_dict_pre_hook(_load_plain(name))
    return counts
