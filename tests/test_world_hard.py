"""data=world_hard: nuisances (clutter, occlusion) are seeded and off by default; occluded pixels leave the masks."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from harness.data.world import World
from harness.data.world_datamodule import WorldDataModule
from harness.facts.conf_dir import CONF_DIR
from harness.facts.errors import ConfigError


def test_world_hard_preset_builds_and_is_seeded() -> None:
    cfg = OmegaConf.load(f"{CONF_DIR}/data/world_hard.yaml")
    dm = WorldDataModule(classes=list(cfg.classes), train_size=24, val_size=8, test_size=8,
                         nuisance=dict(cfg.nuisance))  # fmt: skip
    assert dm.num_classes == 12 and dm.world.clutter == 4 and dm.world.occlusion == 0.3
    a, b = dm.world.generate(24, seed=3), dm.world.generate(24, seed=3)
    assert torch.equal(a.images, b.images)
    plain = World(classes=list(cfg.classes)).generate(24, seed=3)
    assert not torch.equal(a.images, plain.images)


def test_nuisances_off_by_default_and_occlusion_clears_the_masks() -> None:
    world = World(classes=["line", "arc_high"])
    assert world.clutter == 0 and world.occlusion == 0.0
    clean = World(classes=["line", "arc_high"]).generate(16, seed=0)
    occluded = World(classes=["line", "arc_high"], occlusion=1.0).generate(16, seed=0)
    assert int(occluded.masks[:, 3].sum()) < int(clean.masks[:, 3].sum())


def test_bad_nuisance_keys_name_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown data.nuisance key 'clutterr'; valid: noise, min_contrast"):
        WorldDataModule(nuisance={"clutterr": 3})
    with pytest.raises(ConfigError, match="clutter must be an integer >= 0"):
        World(clutter=-1)
