"""Every config group composes, and what can be built on a CPU-only machine instantiates."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch

from tests.conftest import CONF_DIR

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def test_train_yaml_defaults(make_cfg) -> None:
    cfg = make_cfg(tiny=False)
    assert cfg.seed == 0 and cfg.model.width == 0.25 and cfg.model.widen == {} and cfg.model.insert == []
    assert cfg.data.classes[0] == "arc_high" and cfg.data.image_size == 64
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer" and cfg.trainer.precision in ("32-true", "bf16-mixed")
    assert cfg.optimized_metric == "val/acc"
    for group in ("experiment", "hparams_search", "debug"):
        assert cfg.hydra.runtime.choices[group] is None or cfg.hydra.runtime.choices[group] == "null"


# One case per option (`model=torchvision`, ...), so one broken option does not hide the others.
OPTIONS = [f"{group}={option}" for group in GROUPS if group not in ("hydra", "paths") for option in _options(group)]


@pytest.mark.parametrize("override", OPTIONS)
def test_every_option_composes(make_cfg, override) -> None:
    make_cfg(override, tiny=False)


@pytest.mark.parametrize("option", ["inception_v1_tiny", "inception_v1", "torchvision"])
def test_models_instantiate(make_cfg, option) -> None:
    cfg = make_cfg(f"model={option}")
    net = hydra.utils.instantiate(cfg.model, num_classes=5)
    size = 64 if option != "inception_v1" else 32
    assert net(torch.zeros(1, 3, size, size)).shape == (1, 5)


@pytest.mark.parametrize("option", ["default", "cpu"])
def test_trainer_callbacks_module_and_csv_logger_instantiate(make_cfg, option) -> None:
    cfg = make_cfg(f"trainer={option}", "logger=csv")
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    assert all(isinstance(c, pl.Callback) for c in callbacks)
    logger = hydra.utils.instantiate(cfg.logger.csv)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    assert isinstance(trainer, pl.Trainer) and trainer.max_epochs == 1
    net = hydra.utils.instantiate(cfg.model, num_classes=3)
    module = hydra.utils.instantiate(cfg.module, net=net, class_names=["a", "b", "c"])
    optimizer = module.optimizer_factory(params=module.parameters())
    scheduler = module.scheduler_factory(optimizer, total_steps=100)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == cfg.module.optimizer.lr
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] < lrs[5] and max(lrs) == pytest.approx(cfg.module.optimizer.lr) and lrs[-1] < 0.01 * max(lrs)


def test_trainer_overrides_reach_lightning(make_cfg) -> None:
    cfg = make_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=30", "trainer.precision=bf16-mixed")
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    assert trainer.max_epochs == 2 and trainer.limit_train_batches == 30
    assert trainer.precision == "bf16-mixed"


def test_world_datamodule_instantiates(make_cfg) -> None:
    dm = hydra.utils.instantiate(make_cfg("data.classes=[line,corner,texture]").data)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert dm.classes == ("line", "corner", "texture") and x.dtype == torch.uint8 and int(y.max()) <= 2
