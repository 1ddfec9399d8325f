"""Weight surgery on a trained InceptionV1: widen without changing its function, prune exactly, transfer.

Why: to ask "what do new neurons at the curve cluster become?" on a network that already knows
things, the edit itself must change nothing. Every edit is a *unit map* per layer: new unit i is
old unit ``map[i]`` (its incoming weights, bias and batch-norm entries copied) or ``-1`` (a fresh
unit). Consumers read their inputs through the same maps, with outgoing weights split evenly among
copies of one unit, so the network computes exactly what it computed before:

* ``zero`` (default): fresh units get small random incoming weights (0.1 x the std of the layer's
  existing weights), zero bias, default batch norm, and zero outgoing weights. They receive gradient
  at the first step (through their outgoing weights), then at their incoming weights.
* ``net2net``: new units duplicate random existing units and every copy's outgoing weights are
  halved (Chen et al. 2016). Exact halves make the twins receive identical gradients forever;
  ``noise`` > 0 splits each outgoing weight unevenly, w(1/2 + e) + w(1/2 - e), still function-preserving,
  so the copies can drift apart.
* pruning removes units and their outgoing weights; the kept units compute exactly what they did.

Exact up to float rounding, with one documented exception: local response norm (``lrn=true``) mixes
neighbouring channels of conv2d0 and conv2d2, so widening those two layers changes the last few
old channels' normalisation slightly (measure it with :func:`max_output_change`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from harness.facts.edits import CONCAT_BRANCHES, add_widen
from harness.facts.errors import ConfigError
from harness.models.custom import WIDEN_INITS
from harness.models.hooks import capture, eval_mode
from harness.models.inception_v1 import ConvReLU, InceptionV1
from harness.models.names import layers

INIT_SCALE = 0.1  # fresh units' incoming weights: this x the std of the layer's existing weights
_INPUTS = ("1x1", "3x3_bottleneck", "5x5_bottleneck", "pool_reduce")  # convs reading a block's input


def _unit_names(net: InceptionV1) -> list[str]:
    return [n for n, m in net.hook_points().items() if isinstance(m, ConvReLU)]


def _check_name(net: InceptionV1, name: str) -> None:
    if name not in _unit_names(net):
        raise ConfigError(f"unknown layer {name!r} for surgery; valid: {', '.join(_unit_names(net))}")


def consumers(net: InceptionV1, name: str) -> list[tuple[nn.Module, int]]:
    """(Conv2d or Linear reading the units of ``name``, the input-channel offset at which they appear)."""
    _check_name(net, name)
    stem = [n for n, _, _ in net.plan.stem]
    blocks = {b.name: (i, b) for i, b in enumerate(net.plan.blocks)}
    points = net.hook_points()

    def inputs_of(index: int, offset: int) -> list[tuple[nn.Module, int]]:
        if index == len(net.plan.blocks):
            return [(net.fc, offset)]
        block = points[net.plan.blocks[index].name]
        return [(block.branches()[b].conv, offset) for b in _INPUTS]

    if name in stem:
        i = stem.index(name)
        return [(points[stem[i + 1]].conv, 0)] if i + 1 < len(stem) else inputs_of(0, 0)
    block_name, branch = next((b, name[len(b) + 1 :]) for b in blocks if name.startswith(f"{b}_")
                              and name[len(b) + 1 :] in points[b].branches())  # fmt: skip
    index, plan = blocks[block_name]
    if branch.endswith("_bottleneck"):
        return [(points[block_name].branches()[branch.removesuffix("_bottleneck")].conv, 0)]
    offset = sum(plan.widths[b] for b in CONCAT_BRANCHES[: CONCAT_BRANCHES.index(branch)])
    return inputs_of(index + 1, offset)


def _shares(in_map: torch.Tensor, n_src: int, n_out: int, noise: float, gen) -> torch.Tensor:
    """[n_out, n_in] factor for each copied input weight: 1 / copies of that input unit (+ zero-sum noise)."""
    valid = in_map >= 0
    idx = in_map.clamp(min=0)
    counts = torch.zeros(n_src).index_add_(0, idx[valid], torch.ones(int(valid.sum())))
    c = counts[idx].clamp(min=1)
    share = (1.0 / c).expand(n_out, -1).clone()
    if noise > 0 and bool((c > 1).any()):
        eps = (torch.rand(n_out, len(in_map), generator=gen) * 2 - 1) * noise / c
        eps[:, (c == 1) | ~valid] = 0
        group = torch.zeros(n_out, n_src).index_add_(1, idx, eps)
        share += eps - group[:, idx] / c  # each copy group's factors still sum to exactly 1 in real arithmetic
    return share


@torch.no_grad()
def _copy(src: nn.Module, dst: nn.Module, out_map: list[int], in_map: list[int], noise: float, gen) -> None:
    """Fill ``dst`` (Conv2d or Linear) from ``src`` through the unit maps."""
    out, inp = torch.tensor(out_map, dtype=torch.long), torch.tensor(in_map, dtype=torch.long)
    old = src.weight.detach().float().cpu()
    spatial = (1,) * (old.dim() - 2)
    w = old[out.clamp(min=0)][:, inp.clamp(min=0)] * _shares(inp, old.shape[1], len(out), noise, gen).view(
        len(out), len(inp), *spatial
    )
    w[:, inp < 0] = 0.0  # fresh input units: zero outgoing weights
    fresh = out < 0
    if bool(fresh.any()):
        std = float(old.std()) if old.numel() > 1 else 0.01
        w[fresh] = torch.randn(int(fresh.sum()), *w.shape[1:], generator=gen) * (INIT_SCALE * std)
    dst.weight.copy_(w)
    if dst.bias is not None and src.bias is not None:
        dst.bias.copy_(torch.where(fresh, 0.0, src.bias.detach().cpu()[out.clamp(min=0)]))


@torch.no_grad()
def _copy_unit(src: ConvReLU, dst: ConvReLU, out_map: list[int], in_map: list[int], noise: float, gen) -> None:
    _copy(src.conv, dst.conv, out_map, in_map, noise, gen)
    if isinstance(dst.bn, nn.BatchNorm2d) and isinstance(src.bn, nn.BatchNorm2d):
        out = torch.tensor(out_map, dtype=torch.long)
        fresh = out < 0
        for attr, default in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            value = getattr(src.bn, attr).detach().cpu()[out.clamp(min=0)]
            getattr(dst.bn, attr).copy_(torch.where(fresh, default, value))
        dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)


def transfer(
    source: InceptionV1,
    target: InceptionV1,
    maps: Mapping[str, Sequence[int]],
    copy_head: bool = True,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> None:
    """Copy ``source``'s weights into ``target`` (in place) through per-layer unit maps.

    ``maps[name][i]`` = the source unit that target unit i copies, or -1 for a fresh unit; layers
    without a map are copied one to one. ``copy_head=False`` leaves ``target.fc`` as it is (a new head).
    """
    src_pts, dst_pts, channels = source.hook_points(), target.hook_points(), source.channels

    def unit_map(name: str) -> list[int]:
        m = list(maps.get(name, range(channels[name])))
        if len(m) != target.channels[name]:
            raise ValueError(f"unit map of {name} has {len(m)} entries, target has {target.channels[name]} units")
        return m

    prev = [0, 1, 2]
    for name, _, _ in source.plan.stem:
        _copy_unit(src_pts[name], dst_pts[name], unit_map(name), prev, noise, generator)
        prev = unit_map(name)
    for block in source.plan.blocks:
        concat, offset = [], 0
        for branch in _INPUTS:
            name = f"{block.name}_{branch}"
            _copy_unit(src_pts[name], dst_pts[name], unit_map(name), prev, noise, generator)
        for branch in ("3x3", "5x5"):
            name, below = f"{block.name}_{branch}", unit_map(f"{block.name}_{branch}_bottleneck")
            _copy_unit(src_pts[name], dst_pts[name], unit_map(name), below, noise, generator)
        for branch in CONCAT_BRANCHES:
            name = f"{block.name}_{branch}"
            concat += [offset + i if i >= 0 else -1 for i in unit_map(name)]
            offset += channels[name]
        prev = concat
    if copy_head:
        _copy(source.fc, target.fc, list(range(target.fc.out_features)), prev, noise, generator)


def _rebuild(net: InceptionV1, delta: Mapping[str, int]) -> InceptionV1:
    """An untrained InceptionV1 like ``net`` with ``delta`` added to its widths (the global RNG left alone)."""
    with torch.random.fork_rng(devices=[]):
        target = InceptionV1(**{**net.config, "widen": add_widen(net.config["widen"], delta)})
    param = next(net.parameters())
    return target.to(device=param.device).train(net.training)


def least_active_units(
    net: InceptionV1, name: str, n: int, images: torch.Tensor | None = None, batch_size: int = 64
) -> list[int]:
    """The ``n`` units of layer ``name`` to prune first, in ascending order of use.

    With ``images`` (a small batch of probe inputs): smallest mean post-ReLU activation. Without data:
    smallest L1 norm of the outgoing weights (what the rest of the network reads from the unit).
    """
    _check_name(net, name)
    width = net.channels[name]
    if not 0 <= n < width:
        raise ConfigError(f"cannot prune {n} of the {width} units of {name}: a layer must keep >= 1")
    if images is not None:
        total = torch.zeros(width)
        with torch.no_grad(), eval_mode(net), capture(net, [name]) as cache:
            for start in range(0, len(images), batch_size):
                net(images[start : start + batch_size])
                total += cache[name].float().sum(dim=(0, 2, 3)).cpu()
        score = total / max(len(images), 1)
    else:
        score = torch.zeros(width)
        for module, offset in consumers(net, name):
            w = module.weight.detach().abs().float().cpu()[:, offset : offset + width]
            score += w.transpose(0, 1).reshape(width, -1).sum(1)
    return sorted(torch.argsort(score, stable=True)[:n].tolist())


def prune_units(net: InceptionV1, name: str, units: Sequence[int]) -> InceptionV1:
    """A copy of ``net`` without the given units of layer ``name``; every other unit computes what it did.

    Usage: ``smaller = prune_units(net, "mixed4a_3x3", [3, 17])``
    """
    _check_name(net, name)
    width, drop = net.channels[name], {int(u) for u in units}
    if len(drop) != len(units) or not all(0 <= u < width for u in drop) or len(drop) >= width:
        raise ConfigError(f"cannot prune units {list(units)} of {name}: need distinct indices in [0, {width}), "
                          f"leaving >= 1")  # fmt: skip
    target = _rebuild(net, {name: -len(drop)})
    transfer(net, target, {name: [u for u in range(width) if u not in drop]})
    return target


def prune_least_active(net: InceptionV1, name: str, n: int, images: torch.Tensor | None = None) -> InceptionV1:
    """:func:`prune_units` of the ``n`` units :func:`least_active_units` picks."""
    return prune_units(net, name, least_active_units(net, name, n, images))


def unit_maps(
    net: InceptionV1,
    widen: Mapping[str, int],
    init: str = "zero",
    images: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, list[int]]:
    """Per-layer unit maps for widen edits on ``net``: > 0 appends units (``init``), < 0 prunes the least active."""
    if init not in WIDEN_INITS:
        raise ConfigError(f"unknown model.widen_init {init!r}; valid: {', '.join(WIDEN_INITS)}")
    maps = {}
    for name, extra in widen.items():
        _check_name(net, name)
        width = net.channels[name]
        if extra > 0:
            fresh = init != "net2net"
            new = [-1] * extra if fresh else torch.randint(width, (extra,), generator=generator).tolist()
            maps[name] = list(range(width)) + new
        elif extra < 0:
            drop = set(least_active_units(net, name, -extra, images))
            maps[name] = [u for u in range(width) if u not in drop]
    return maps


def resize(
    net: InceptionV1,
    widen: Mapping[str, int],
    init: str = "zero",
    images: torch.Tensor | None = None,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> InceptionV1:
    """A copy of ``net`` with widen edits applied to its trained weights, computing the same function.

    Usage: ``wide = resize(net, {"mixed3b_5x5": 8}, init="net2net")``; new units are the last 8 of mixed3b_5x5.
    """
    maps = unit_maps(net, widen, init, images, generator)
    target = _rebuild(net, {k: v for k, v in widen.items() if v})
    transfer(net, target, maps, noise=noise, generator=generator)
    return target


def added_units(net: nn.Module, widen: Mapping[str, int]) -> dict[str, list[int]]:
    """Layer -> indices of the units a positive widen edit added (always the last ones), for any model."""
    channels = layers(net)
    return {k: list(range(channels[k] - v, channels[k])) for k, v in widen.items() if v > 0}


def max_output_change(before: nn.Module, after: nn.Module, images: torch.Tensor) -> float:
    """Max |logit difference| between two networks on ``images`` (eval mode, no grad)."""
    with torch.no_grad(), eval_mode(before), eval_mode(after):
        return float((before(images) - after(images)).abs().max())
