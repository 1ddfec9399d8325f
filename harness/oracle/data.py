"""The data of oracle jobs: one worker process shares the generated splits; the images a function check runs on.

Why: an oracle is dozens of short jobs on the same data; the built-in world renders its images on the fly
(about 20 s per 4,000 images on a busy 2-core machine), so generating 22,000 images per job would cost more
than the training itself. Hydra's joblib launcher runs the jobs in a few long-lived worker processes, so a
per-process memo of the splits, keyed by the data config, renders them once per worker. Data modules
without a ``splits`` dict (torchvision folders, CIFAR) are returned as they are.
"""

from __future__ import annotations

import json
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

_SPLITS: dict[str, dict[str, Any]] = {}  # data config (JSON) -> its generated splits, in this process


def shared_splits(target: str, **kwargs: Any) -> Any:
    """The data module ``target(**kwargs)``, its splits shared with every earlier module of the same config."""
    plain = {k: OmegaConf.to_container(v) if isinstance(v, DictConfig | ListConfig) else v for k, v in kwargs.items()}
    module = hydra.utils.instantiate({"_target_": target, **plain})
    splits = getattr(module, "splits", None)
    if isinstance(splits, dict):
        module.splits = _SPLITS.setdefault(json.dumps([target, plain], sort_keys=True, default=str), splits)
    return module


CHECK_IMAGES = 64  # validation images the step-0 function check runs on


def check_images(data_cfg: dict[str, Any], n: int = CHECK_IMAGES) -> torch.Tensor:
    """The first ``n`` validation images of a run's data (the splits shrunk to ``n``), as the data module serves them.

    Why here: the oracle's step-0 function check and the grow loop's check of each round compare a network before
    and after an edit on the same images of the run's own data.
    """
    cfg = {**data_cfg, **{k: n for k in ("train_size", "val_size", "test_size") if k in data_cfg}}
    dm = hydra.utils.instantiate(OmegaConf.create(cfg))
    dm.setup("validate")
    return next(iter(dm.val_dataloader()))[0][:n].float()
