"""Recipe keys that expand into model edits before a run is built: `curve_widen` and `random_tweak`.

Why in code and not plain YAML: a recipe must be able to say "widen *this* branch by N" with the branch
itself a setting (YAML keys cannot be interpolated), and the skeptic's control, "spend the same
parameter budget on a randomly chosen branch or insert", needs parameter counting and a seeded draw.
Both expand into ordinary `model.widen` / `model.insert` entries, so the run record, the wandb config
and the lineage probe see exactly the edit that was trained.

    curve_widen:  {branch: mixed3b_5x5, channels: 32}          -> model.widen.mixed3b_5x5 += 32
    random_tweak: {budget_branch: mixed3b_5x5, channels: 32,    -> a random branch widened (or a block
                   draw: 0, inserts: true}                         inserted) costing about as many
                                                                   parameters as +32 at mixed3b_5x5
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.facts.errors import ConfigError

# Classes assumed when pricing an edit: only the head's input width depends on it, the same for all arms.
_PRICING_CLASSES = 10


def expand_recipes(cfg: DictConfig) -> dict[str, Any] | None:
    """Fold `cfg.curve_widen` / `cfg.random_tweak` into `cfg.model` (in place); returns what was chosen."""
    chosen = None
    if cfg.get("curve_widen") is not None:
        spec = cfg.curve_widen
        _add_widen(cfg, str(spec.branch), _channels(spec.get("channels"), "curve_widen.channels"))
    if cfg.get("random_tweak") is not None:
        chosen = draw_random_tweak(cfg.model, cfg.random_tweak)
        if chosen["kind"] == "widen":
            _add_widen(cfg, chosen["target"], chosen["channels"])
        elif chosen["kind"] == "insert":
            with open_dict(cfg.model):
                cfg.model.insert = [*(cfg.model.get("insert") or []), chosen["target"]]
    return chosen


def _channels(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer number of channels, got {value!r}")
    return value


def _add_widen(cfg: DictConfig, branch: str, channels: int) -> None:
    with open_dict(cfg.model):
        if cfg.model.get("widen") is None:
            cfg.model.widen = {}
        cfg.model.widen[branch] = int(cfg.model.widen.get(branch, 0)) + channels


def _architecture(model_cfg: DictConfig) -> dict[str, Any]:
    from harness.facts.family import family

    target = str(model_cfg.get("_target_", ""))
    if not family(model_cfg).has_plan:
        raise ConfigError(
            f"random_tweak and curve_widen need an InceptionV1 model (model=inception_v1_tiny or "
            f"model=inception_v1), got {target or 'no model'}"
        )
    keys = ("width", "batch_norm", "lrn", "last_layer", "widen", "insert")
    arch = {k: model_cfg.get(k) for k in keys if k in model_cfg}
    return OmegaConf.to_container(OmegaConf.create(arch), resolve=True)


def draw_random_tweak(model_cfg: DictConfig, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A seeded random edit whose parameter cost matches `+channels` at `budget_branch`.

    Candidates: every branch of every mixed layer (the channel count is solved so the cost is closest
    to the budget) and, with `inserts: true`, a copied block after any mixed layer whose cost lies
    within 0.5x-2x of the budget. Returns {kind, target, channels, params_added, budget_params}.
    """
    from harness.facts.edits import BRANCHES, MIXED_NAMES, widen_targets
    from harness.models.pricing import added, count_params

    arch = _architecture(model_cfg)
    budget_branch = str(spec.get("budget_branch", "mixed3b_5x5"))
    channels = _channels(spec.get("channels"), "random_tweak.channels")
    targets = widen_targets(arch.get("insert"), arch.get("last_layer"))
    if budget_branch not in targets:
        raise ConfigError(f"unknown random_tweak.budget_branch {budget_branch!r}; valid: {', '.join(targets)}")
    base = count_params(arch, _PRICING_CLASSES)
    budget = added(arch, _PRICING_CLASSES, {budget_branch: channels}, base=base)
    options: list[dict[str, Any]] = []
    if budget > 0:
        for target in targets:
            if not target.endswith(tuple(f"_{b}" for b in BRANCHES)):
                continue  # stem layers change every later shape; the control edits blocks, like the recipe
            per_unit = added(arch, _PRICING_CLASSES, {target: 1}, base=base)  # a widen's cost is linear in its units
            n = max(1, round(budget / per_unit))
            options.append({"kind": "widen", "target": target, "channels": n, "params_added": n * per_unit})
        if spec.get("inserts", True):
            for layer in (name for name in MIXED_NAMES if f"{name}_1x1" in targets):
                cost = added(arch, _PRICING_CLASSES, insert=[layer], base=base)
                if 0.5 * budget <= cost <= 2 * budget:
                    options.append({"kind": "insert", "target": layer, "channels": 0, "params_added": cost})
    if not options:
        return {"kind": "none", "target": None, "channels": 0, "params_added": 0, "budget_params": budget}
    rng = random.Random(int(spec.get("draw", 0)))
    return {**rng.choice(options), "budget_params": budget}
