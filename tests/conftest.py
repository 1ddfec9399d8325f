"""Shared fixtures: compose the real `conf/train.yaml` with test-sized overrides, isolated per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Small enough to train in seconds on 2 cores, big enough to exercise every stage.
TINY = [
    "data.train_size=256",
    "data.val_size=64",
    "data.test_size=64",
    "data.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(autouse=True, scope="session")
def _isolated_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test may reach a wandb server or read the developer's wandb settings."""
    home = tmp_path_factory.mktemp("wandb_home")
    saved = dict(os.environ)
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY"):
        os.environ.pop(key, None)
    os.environ.update(
        NETRC=str(home / "netrc"),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_SILENT="true",
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Probe caches (the curves probe's random-init census) go to a temp folder, not the developer's ~/.cache."""
    saved = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("harness_cache"))
    yield
    if saved is None:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    else:
        os.environ["HARNESS_CACHE_DIR"] = saved


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP contention on a shared 2-core machine (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """`make_cfg(*overrides)` -> the composed train config, writing into tmp_path, HydraConfig set."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        if not any(o.startswith("probes=") for o in overrides):
            overrides = ("probes=none", *overrides)  # probes are tested on their own and in test_probe_e2e
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                config_name="train",
                return_hydra_config=True,
                overrides=[*(TINY if tiny else []), *overrides],
            )
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path)
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()
