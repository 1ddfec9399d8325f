"""Rebuild a trained network from a run's checkpoint and its run record.

Why the record: a Lightning checkpoint holds weights but our module does not pickle the network's
config; the run record next to it has the resolved config, so the exact variant (widen, insert,
width, classes) is rebuilt from config and the weights are loaded with `weights_only=True`.
A run that started from other weights (`model.weights`, `model.init_from`) is rebuilt as its final
architecture with nothing loaded but the checkpoint (:func:`harness.models.pretrained.architecture`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from harness.errors import ConfigError
from harness.records import RECORD_NAME, RunRecord


def find_record(ckpt: Path) -> Path:
    """The record.json of the run a checkpoint belongs to (the checkpoint's folder or its parent)."""
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / RECORD_NAME).is_file():
            return folder / RECORD_NAME
    raise ConfigError(f"no {RECORD_NAME} next to checkpoint {ckpt}: pass the run's model config instead")


def run_of(ckpt_path: str | Path) -> dict[str, Any]:
    """The run record (config, classes, ...) of the run that wrote a checkpoint."""
    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} does not exist")
    return RunRecord.load(find_record(ckpt))


def load_net(ckpt_path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(network with trained weights, run record) from a checkpoint written by `harness-train`.

    Usage: ``net, record = load_net("outputs/2026-11-22/20-48-54/checkpoints/last.ckpt")``
    """
    from harness.models.custom import instantiate_model
    from harness.models.pretrained import architecture, read_state_dict

    record = run_of(ckpt_path)
    model_cfg = OmegaConf.create(architecture(record["config"]["model"]))
    size = int((record["config"].get("data") or {}).get("image_size") or 64)
    net = instantiate_model(model_cfg, image_size=size, num_classes=len(record["classes"]))
    state = read_state_dict(ckpt_path, what="checkpoint")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"checkpoint {ckpt_path} does not fit its run's model: {str(err).splitlines()[0]}") from None
    return net, record
