"""Checkpoints describe themselves: a checkpoint copied anywhere rebuilds, probes and seeds a widened run;
older checkpoints without the description still load through their run's record.json."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from harness.facts.errors import ConfigError
from harness.models import build_model, max_output_change
from harness.models.build import CHECKPOINT_KEY, load_net
from harness.probe import probe
from harness.run.records import RunRecord
from harness.train import train
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["logger=none", "test=false", "data.train_size=64", "data.val_size=32", "data.test_size=32",
         "data.batch_size=16", "trainer.num_sanity_val_steps=0"]  # fmt: skip


def test_a_checkpoint_copied_anywhere_rebuilds_probes_and_seeds_a_run(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*SMALL, "+model.widen.mixed3b_5x5=2")
    train(cfg)
    original = Path(RunRecord.load(cfg.paths.output_dir)["checkpoints"]["last"])
    net, run = load_net(original)
    stored = torch.load(original, map_location="cpu", weights_only=True)[CHECKPOINT_KEY]
    assert stored["architecture"]["widen"] == {"mixed3b_5x5": 2} and stored["classes"] == run["classes"]
    assert stored["config"]["model"]["widen"] == {"mixed3b_5x5": 2} and stored["seed"] == cfg.seed

    alone = tmp_path / "elsewhere" / "copied.ckpt"  # no record.json in this folder or its parent
    alone.parent.mkdir()
    shutil.copy(original, alone)
    copy, _ = load_net(alone)
    x = torch.rand(2, 3, 64, 64)
    assert max_output_change(net, copy, x) == 0.0

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        pcfg = compose(
            config_name="probe",
            overrides=[
                f"ckpt={alone}",
                "probes=[activations]",
                "probing.probe_set_size=8",
                f"paths.output_dir={tmp_path / 'p'}",
            ],
        )
    GlobalHydra.instance().clear()
    metrics = probe(pcfg)
    assert "activations/mixed3b/dead_fraction" in metrics and "activations/failed" not in metrics

    wide = make_cfg(*SMALL, f"model.init_from={alone}", "+model.widen.mixed3b_5x5=3")
    grown = build_model(wide.model, num_classes=len(run["classes"]))
    assert grown.channels["mixed3b_5x5"] == net.channels["mixed3b_5x5"] + 3
    assert max_output_change(net, grown, x) < 1e-5

    # An older checkpoint (no description): rebuilt through the record next to it; alone, one clear line.
    old = torch.load(original, map_location="cpu", weights_only=True)
    del old[CHECKPOINT_KEY]
    torch.save(old, original.parent / "old.ckpt")
    rebuilt, record = load_net(original.parent / "old.ckpt")
    assert max_output_change(net, rebuilt, x) == 0.0 and record["variant"] == run["variant"]
    torch.save(old, alone.parent / "old.ckpt")
    with pytest.raises(ConfigError, match="no record.json next to checkpoint .* does not describe its architecture"):
        load_net(alone.parent / "old.ckpt")
