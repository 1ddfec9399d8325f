"""What both entry points (`harness-train`, `harness-probe`) build from a composed config.

Why a module of its own: entry points must not import each other. `harness-probe` needs the same
model, probes, random-init control and model summary as a training run, so its results compare with
training's; each is built here once and both commands import it. The model itself comes from the
model-building pipeline (:mod:`harness.models.build`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from harness.facts.conf_dir import CONF_DIR
from harness.facts.errors import ConfigError
from harness.models.build import CHECKPOINT_KEY, architecture, model_architecture
from harness.models.build import build_model as build_from_model_config
from harness.models.consumers import growth_facts
from harness.models.names import default_layers, hook_points, layer_names, layers

# Random-init controls (curve census, CKA reference of harness-probe) draw their weights from this seed
# offset, so a control never shares its init with the run's own model (seed) yet is the same for every run
# of one seed.
CONTROL_SEED_OFFSET = 10_000


def control_seed(seed: int) -> int:
    """The seed of a run's random-init controls."""
    return int(seed) + CONTROL_SEED_OFFSET


def build_model(cfg: DictConfig, num_classes: int, image_size: int) -> torch.nn.Module:
    """The network of `cfg.model`, filling `num_classes` from the data when it is null."""
    return build_from_model_config(cfg.model, num_classes=num_classes, image_size=image_size)


def model_summary(
    net: torch.nn.Module, probe_layers: Sequence[str] | None = None, image_size: int = 64
) -> dict[str, Any]:
    """Parameter counts and per-layer channels: the first thing to compare across architecture variants.

    Any model but InceptionV1 (whose edits are its channel plan) also gets its widen targets and the target
    growing each probe layer (`probe_layers`, default its main layers), read by harness-suggest without torch
    (:func:`harness.models.consumers.growth_facts`).
    """
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    summary = {"params/total": total, "params/trainable": trainable, "channels": layers(net)}
    if getattr(net, "plan", None) is None:
        summary.update(growth_facts(net, list(probe_layers or default_layers(net)), image_size))
    return summary


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """`model_summary` as flat logger keys: model/params/total, model/params/trainable, model/channels/<layer>."""
    flat = {f"model/{k}": v for k, v in summary.items() if k.startswith("params/")}
    flat.update({f"model/channels/{k}": v for k, v in summary["channels"].items()})
    return flat


def build_probes(cfg: DictConfig) -> dict[str, Any]:
    """The probes selected in `cfg.probes` (`probes=[curves,cka]`), built from their configs, in config order."""
    return {
        name: hydra.utils.instantiate(p_cfg)
        for name, p_cfg in (cfg.get("probes") or {}).items()
        if isinstance(p_cfg, DictConfig) and "_target_" in p_cfg
    }


def fresh_model_factory(cfg: DictConfig, num_classes: int, image_size: int, seed: int) -> Callable[[], torch.nn.Module]:
    """A function building the run's architecture with a fresh, seeded random init (probe controls)."""
    # The same architecture with nothing loaded: `weights` / `init_from` would make the control the trained net.
    arch = OmegaConf.create({"model": architecture(cfg.model)})

    def make() -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_model(arch, num_classes, image_size)

    return make


def check_probe_layers(cfg: DictConfig, net: torch.nn.Module) -> None:
    """ConfigError naming the valid layers when `probing.layers` lists one the network does not have."""
    names = (cfg.get("probing") or {}).get("layers") if cfg.get("probes") else None
    if not names:
        return
    valid = list(hook_points(net))
    known = layer_names(net)  # hook points and any dotted module path
    unknown = [name for name in names if str(name).split(":")[0] not in known]
    if unknown:
        shown = ", ".join(map(str, unknown))
        raise ConfigError(f"unknown layer(s) {shown} in probing.layers; valid: {', '.join(valid)}")


def checkpoint_meta(cfg: DictConfig, num_classes: int, variant: str) -> dict[str, Any]:
    """What every checkpoint of this run carries under `CHECKPOINT_KEY` so it can be rebuilt from the file alone.

    ``architecture``: the resolved model config (loading keys dropped, edits included, ``num_classes`` set);
    ``config``: the run's own model and data config (``model.widen`` = the units this run added); plus
    variant and seed. The module adds the class names. Plain containers only: checkpoints load with
    ``weights_only=True``.
    """
    return {
        "architecture": model_architecture(cfg.model, num_classes),
        "config": {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "data") if cfg.get(k)},
        "variant": variant,
        "seed": int(cfg.seed),
    }


__all__ = [
    "CHECKPOINT_KEY",
    "CONF_DIR",
    "CONTROL_SEED_OFFSET",
    "build_model",
    "build_probes",
    "check_probe_layers",
    "checkpoint_meta",
    "control_seed",
    "fresh_model_factory",
    "model_summary",
    "summary_metrics",
]
