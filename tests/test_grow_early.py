"""experiment=grow_early: a chain from 1/4 width that ends at the target architecture, one schedule across the
rounds (carried optimizer state and step), the same total steps as the static baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from harness.facts.errors import ConfigError
from harness.facts.keys import SCHEDULE_STEP_KEY
from harness.facts.overrides import channels
from harness.grow.loop import check, resolve_budget, run_chain
from harness.run.records import RunRecord
from harness.train import train
from tests.conftest import CONF_DIR

TINY = ["data.train_size=128", "data.val_size=32", "data.test_size=32", "data.batch_size=32",
        "trainer.accelerator=cpu", "grow.base_steps=3", "grow.steps=2", "grow.rounds=2", "module.schedule_steps=7",
        "model.widen_batches=1"]  # fmt: skip


def _compose(tmp_path: Path, *extra: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=["experiment=grow_early", *TINY, *extra])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(tmp_path / "chain")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_grow_early_ends_at_the_target_width_in_the_static_budget(tmp_path: Path, one_thread) -> None:
    assert _compose(tmp_path).model.widen_init == "zero"  # the measured default (docs/results: zero beat gradmax)
    cfg = _compose(tmp_path, "model.widen_init=gradmax")  # the chain with the init that needs the most plumbing
    try:
        run_chain(cfg, train)
    finally:
        GlobalHydra.instance().clear()
    record = RunRecord.load(tmp_path / "chain")
    rounds = record["grow"]["rounds"]
    assert [r["steps"] for r in rounds] == [3, 2, 2] and sum(r["steps"] for r in rounds) == 7
    target = channels({**record["config"]["model"], "width": 0.25, "widen": {}})
    assert record["model"]["channels"]["conv2d0"] == target["conv2d0"] == 16
    assert all(record["model"]["channels"][t] == target[t] for t in ("mixed3b_5x5", "mixed4a_3x3", "conv2d2"))
    # grow.budget=to_width (any other policy's budget in this experiment): to_width's own growth per round, on average
    budget = resolve_budget(cfg.grow, dict(record["config"]["model"]), len(record["classes"]))
    assert rounds[-1]["params"] - rounds[0]["params"] == pytest.approx(2 * budget, abs=1)
    last = RunRecord.load(rounds[-1]["run_dir"])
    assert last["widen_init"]["init"] == "gradmax"
    ckpt = torch.load(last["checkpoints"]["last"], map_location="cpu", weights_only=False)
    assert ckpt[SCHEDULE_STEP_KEY] == 7  # 3 + 2 carried + 2 of its own: one schedule across the chain


@pytest.mark.parametrize("extra", [["grow.target_width=0.05"], ["grow.policy=random", "grow.target_width=0.05"]])
def test_to_width_needs_a_target_above_the_base(tmp_path: Path, extra: list[str]) -> None:
    cfg = _compose(tmp_path, *extra)  # the to_width policy, and the to_width budget of any other policy
    try:
        with pytest.raises(ConfigError, match="grow.target_width > the base"):
            run_chain(cfg, train)
    finally:
        GlobalHydra.instance().clear()


def test_budget_is_a_count_null_or_to_width(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "grow.policy=random")
    GlobalHydra.instance().clear()
    base = {**cfg.model}
    ten_percent = resolve_budget({**cfg.grow, "budget": None}, base, 12)
    assert resolve_budget(cfg.grow, base, 12) > 10 * ten_percent  # from 1/4 width: 4 rounds to 16x the parameters
    assert resolve_budget({**cfg.grow, "budget": 500}, base, 12) == 500
    for bad in ("to_with", 0, True):  # negative controls: one line naming the valid values
        with pytest.raises(ConfigError, match="null .10% of the base. or to_width"):
            check({**cfg.grow, "budget": bad})


def test_every_policy_can_run_in_grow_early(tmp_path: Path) -> None:
    """Every grow.policy has its probes listed and configured here (gradmax once failed after round 0: no probe)."""
    from harness.grow.policies import POLICIES, PROBE_POLICIES

    cfg = _compose(tmp_path)
    GlobalHydra.instance().clear()
    assert set(cfg.grow.probes) == set(POLICIES)
    for policy in PROBE_POLICIES:
        assert policy in cfg.grow.probes[policy]
    named = {p for listed in cfg.grow.probes.values() for p in listed}
    assert named <= set(cfg.probes) and {"curves", "lineage"} <= set(cfg.grow.probes.suggest)
