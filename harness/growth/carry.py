"""Optimizer state and LR schedule across growth, and a learning-rate factor of the new units' own.

Why: every continued run (``model.init_from`` + widen, a grow-loop round, an oracle job) used to start a fresh
optimizer with its schedule restarted at peak, so the no-edit control itself jumped away from the base (the
oracle needed 0.1x LR to stay level). GradMax's code instead carries the moments of the old parameters and
zero-pads the new entries; Variance Transfer (Yuan et al. 2023) gives new parameters a larger LR.

* :func:`new_entry_masks`: per parameter name, which entries the widen edit added (producer rows and bias, the
  batch norm right after it, the consumers' new input columns), from the same wiring the inits use.
* :func:`carry_state`: the old optimizer's ``state_dict`` moved onto the grown network's parameters: old
  entries keep their moments, new entries start at 0, per-parameter step counts are kept (Adam's bias
  correction goes on; a new entry's first updates are then up to ~3x a fresh Adam's, as in GradMax's code). A
  parameter whose growth no mask explains (a depthwise conv on the path, a layer scale) starts fresh.
* :class:`NewLR`: step hooks that scale each new entry's step by ``new_lr_scale`` (any optimizer: the entry is
  moved ``scale`` times as far as the optimizer moved it; weight decay included).
* the schedule continues at the carried step (:func:`advance`; a chain's steps add up through
  ``SCHEDULE_STEP_KEY`` in each checkpoint) and ends at this run's last step, or at ``module.schedule_steps``
  when that is set (one schedule over a whole grow chain: ``experiment=grow_early``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from harness.facts.keys import SCHEDULE_STEP_KEY
from harness.growth.new_units import NewUnits, bias_before_activation
from harness.models.consumers import wirings


def new_entry_masks(
    net: nn.Module, added: Mapping[str, Sequence[int]], image_size: int = 64
) -> dict[str, torch.Tensor]:
    """Parameter name -> bool mask of the entries that ``added`` (target -> new unit indices) created."""
    names = {id(p): n for n, p in net.named_parameters()}
    masks: dict[str, torch.Tensor] = {}

    def mark(param: torch.Tensor | None, index: Any) -> None:
        if param is None or id(param) not in names:
            return
        name = names[id(param)]
        mask = masks.setdefault(name, torch.zeros(param.shape, dtype=torch.bool))
        mask[index] = True

    for w in wirings(net, list(added), image_size=image_size) if added else []:
        units = NewUnits(w, list(added[w.target]), bias_before_activation(net, w))
        for u in units.units:
            mark(w.producer.weight, u)
            mark(w.producer.bias, u)
            if units.bias is not None and units.bias is not w.producer.bias:  # a batch norm: its weight too
                norm = next(m for m in net.modules() if getattr(m, "bias", None) is units.bias)
                mark(norm.weight, u)
                mark(norm.bias, u)
            for i, c in enumerate(w.consumers):
                mark(c.module.weight, (slice(None), units.columns(i, u)))
    return masks


def carry_state(
    old_state: Mapping[str, Any], old_names: Sequence[str], new_params: Sequence[tuple[str, torch.Tensor]],
    masks: Mapping[str, torch.Tensor], param_groups: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[str]]:
    """(a ``state_dict`` for an optimizer over ``new_params`` (name, parameter) with ``param_groups``, the names
    that start fresh). ``old_state`` is ``optimizer.state_dict()`` of an optimizer over ``old_names``' parameters
    in that order (a Lightning checkpoint's ``optimizer_states[0]`` for the module's ``net.*`` parameters)."""
    old_index = {n: i for i, n in enumerate(old_names)}
    state: dict[int, dict[str, Any]] = {}
    fresh: list[str] = []
    for j, (name, param) in enumerate(new_params):
        entry = old_state["state"].get(old_index.get(name, -1))
        if entry is None:
            fresh.append(name)
            continue
        moved: dict[str, Any] = {}
        for key, value in entry.items():
            if not torch.is_tensor(value) or value.dim() == 0 or value.shape == param.shape:
                moved[key] = value.clone() if torch.is_tensor(value) else value
                continue
            mask = masks.get(name)
            if mask is None or mask.shape != param.shape or int((~mask).sum()) != value.numel():
                break  # growth this mask does not explain: the parameter starts fresh
            grown = value.new_zeros(param.shape)
            grown[~mask.to(grown.device)] = value.reshape(-1)  # old entries keep their row-major order
            moved[key] = grown
        else:
            state[j] = moved
            continue
        fresh.append(name)
    return {"state": state, "param_groups": param_groups}, fresh


class NewLR:
    """Scale the new entries' optimizer steps by ``scale`` (step pre/post hooks on ``optimizer``).

    Usage: ``NewLR(optimizer, {param: mask}, 3.0)``; ``.remove()`` takes the hooks off."""

    def __init__(self, optimizer: torch.optim.Optimizer, masks: Mapping[torch.Tensor, torch.Tensor], scale: float):
        self.masks = {p: m.to(p.device) for p, m in masks.items() if bool(m.any())}
        self.scale = float(scale)
        self.before: dict[torch.Tensor, torch.Tensor] = {}
        self.handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    def _pre(self, *_: Any) -> None:
        self.before = {p: p.detach()[m].clone() for p, m in self.masks.items()}

    @torch.no_grad()
    def _post(self, *_: Any) -> None:
        for p, m in self.masks.items():
            old = self.before[p]
            p[m] = old + self.scale * (p[m] - old)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def advance(scheduler: Any, steps: int) -> None:
    """Put a per-step scheduler at step ``steps`` (the carried global step), as if it had run them."""
    if steps <= 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        scheduler.last_epoch = steps - 1
        scheduler.step()


class Growth:
    """What a continued, grown run hands its training module: the carried optimizer state (or None), the step the
    schedule goes on from, the new entries' masks (by parameter name of the network) and their LR factor.

    The module calls :meth:`attach` on its fresh optimizer and :meth:`advance` on its scheduler."""

    def __init__(self, masks: Mapping[str, torch.Tensor], new_lr_scale: float = 1.0,
                 old_state: Mapping[str, Any] | None = None, old_names: Sequence[str] = (), step: int = 0,
                 prefix: str = "net.") -> None:  # fmt: skip
        self.masks = {prefix + k: v for k, v in masks.items()}
        self.new_lr_scale, self.old_state, self.step = float(new_lr_scale), old_state, int(step)
        self.old_names = [prefix + n for n in old_names]
        self.fresh: list[str] = []
        self.hooks: NewLR | None = None

    def attach(self, optimizer: torch.optim.Optimizer, module: nn.Module) -> int:
        """Load the carried state into ``optimizer`` (over ``module.parameters()``), hook the new LR; the offset."""
        params = list(module.named_parameters())
        if self.old_state is not None:
            state, self.fresh = carry_state(self.old_state, self.old_names, params, self.masks,
                                            optimizer.state_dict()["param_groups"])  # fmt: skip
            optimizer.load_state_dict(state)
        if self.new_lr_scale != 1.0:
            by_name = dict(params)
            self.hooks = NewLR(optimizer, {by_name[n]: m for n, m in self.masks.items() if n in by_name},
                               self.new_lr_scale)  # fmt: skip
        return self.step if self.old_state is not None else 0

    def advance(self, scheduler: Any) -> None:
        advance(scheduler, self.step if self.old_state is not None else 0)


def growth_from_config(model_cfg: Mapping[str, Any], net: nn.Module, image_size: int) -> Growth | None:
    """The :class:`Growth` of a run's model config: ``carry_optimizer`` (with ``init_from``; without it, as in a grow
    chain's base round, there is nothing to carry) and ``new_lr_scale``; None when neither applies."""
    from harness.facts.errors import ConfigError
    from harness.growth.widen_init import added_by_config

    init_from = model_cfg.get("init_from")
    carry = bool(model_cfg.get("carry_optimizer", False)) and bool(init_from)  # a chain's base round: nothing to carry
    scale = float(model_cfg.get("new_lr_scale", 1.0) or 1.0)
    if not carry and scale == 1.0:
        return None
    added = added_by_config(model_cfg, net)
    masks = new_entry_masks(net, added, image_size)
    if not carry:
        return Growth(masks, scale)
    from harness.models.build import load_net
    from harness.models.pretrained import load_torch_file

    ckpt = load_torch_file(init_from, "checkpoint")
    states = ckpt.get("optimizer_states") if isinstance(ckpt, Mapping) else None
    if not states:
        raise ConfigError(f"model.init_from={init_from} holds no optimizer state (saved weights only); set "
                          f"model.carry_optimizer=false")  # fmt: skip
    old_names = [n for n, _ in load_net(init_from)[0].named_parameters()]
    step = ckpt.get(SCHEDULE_STEP_KEY, ckpt.get("global_step", 0))  # a chain of continued runs: its total
    return Growth(masks, scale, states[0], old_names, int(step))
