"""What an edit costs: the parameters of a model config, and of the same config with edits on top.

Why one module: random_tweak's equal-cost control (:mod:`harness.run.recipes`), the oracle's equal-cost candidates
(:mod:`harness.oracle.candidates`) and the grow loop's budgets and uniform spreads (:mod:`harness.grow.policies`)
all ask "how many parameters does this edit add?". Each priced edits its own way (three ``count_params``, three
ways to add a widen); now they ask here. Costs are measured by building the network, not by a formula, because a
formula drifts from the network code (two widened neighbours add their cross weights). Building is cheap (no
forward pass) and leaves the global RNG alone, so pricing changes no run.

Usage: ``added(arch, 10, widen={"mixed3b_5x5": 8})`` -> parameters that 8 more units at mixed3b_5x5 add.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from harness.facts.edits import INCEPTION_TARGET, add_widen


def count_params(model_cfg: Mapping[str, Any], num_classes: int | None) -> int:
    """Parameters of the network ``model_cfg`` builds (nothing loaded), the global RNG left alone.

    A config without ``_target_`` is an InceptionV1 architecture (``width``, ``widen``, ``insert`` ...).
    """
    import hydra
    from omegaconf import OmegaConf

    cfg = dict(model_cfg) if model_cfg.get("_target_") else {"_target_": INCEPTION_TARGET, **model_cfg}
    with torch.random.fork_rng(devices=[]):
        net = hydra.utils.instantiate(OmegaConf.create(cfg), num_classes=num_classes)
    return sum(p.numel() for p in net.parameters())


def edited(
    arch: Mapping[str, Any], widen: Mapping[str, int] | None = None, insert: Sequence[str] = ()
) -> dict[str, Any]:
    """``arch`` with ``widen`` added to its own widen edits (entries that reach 0 dropped) and ``insert`` appended."""
    own = arch.get("insert") or []
    return {**arch, "widen": add_widen(arch.get("widen"), widen or {}), "insert": [*own, *insert]}


def added(
    arch: Mapping[str, Any],
    num_classes: int | None,
    widen: Mapping[str, int] | None = None,
    insert: Sequence[str] = (),
    base: int | None = None,
) -> int:
    """Parameters that ``widen`` / ``insert`` add to ``arch`` (``base``: its own count, when already known)."""
    if base is None:
        base = count_params(arch, num_classes)
    return count_params(edited(arch, widen, insert), num_classes) - base


def units_for_budget(arch: Mapping[str, Any], num_classes: int | None, target: str, budget: int, base: int) -> int:
    """How many units at ``target`` cost closest to ``budget`` parameters (at least 1): budget / one unit's cost."""
    return max(1, round(budget / added(arch, num_classes, {target: 1}, base=base)))
