"""What a sweep looks like in wandb: names `<variant>-s<seed>-j<job>`, one group per sweep and variant, and one
line at the end that syncs every offline run of the sweep. Read back from the offline files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from harness.facts.errors import ConfigError
from harness.run.wandb_layout import sweep_id
from harness.run.wandb_logger import check_log_model
from harness.run.wandb_offline import read_offline_run
from harness.run.wandb_sync import sync_command
from harness.train import _wandb_names

ONE_BATCH = ["trainer.max_epochs=1", "data.train_size=16", "data.val_size=16", "data.test_size=16",
             "data.batch_size=16", "trainer.enable_progress_bar=false", "probes=none", "test=false"]  # fmt: skip


def _sweep(tmp_path: Path, sweep: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.train", "-m", *args, *ONE_BATCH, f"paths.log_dir={tmp_path}",
           f"hydra.sweep.dir={tmp_path}/{sweep}"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_two_sweeps_of_one_variant_are_two_groups(tmp_path: Path, make_cfg) -> None:
    first = _sweep(tmp_path, "first", "seed=0,1", "tags=[demo]")
    assert first.returncode == 0, first.stderr[-3000:]
    runs = [read_offline_run(tmp_path / "first" / job) for job in ("0", "1")]
    a = sweep_id(tmp_path / "first")
    assert [r.name for r in runs] == ["base-s0-j0", "base-s1-j1"]
    assert {r.group for r in runs} == {f"{a}/base"}  # the seeds of one variant in one sweep average together
    assert all(r.job_type == "train" and r.config["variant"] == "base" and r.config["sweep"] == a for r in runs)
    assert runs[0].tags == ["demo", f"sweep:{a}"]
    # the sweep ends with one line that syncs all of its offline runs
    line = [x for x in first.stdout.splitlines() if x.startswith("wandb: sync")]  # each job's summary has its own
    assert line == [f"wandb: sync the sweep's 2 offline run folders with: {sync_command(tmp_path / 'first')}"]
    assert line[0].endswith(f"{tmp_path / 'first'}/*/wandb/offline-run-*")

    # the same variant in a second sweep (same code path as the jobs above, in-process): another group
    cfg = make_cfg("seed=0")
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.sweep.dir = RunMode.MULTIRUN, str(tmp_path / "second")
    HydraConfig.instance().set_config(cfg)
    try:
        again = _wandb_names(cfg, "base")
    finally:  # HydraConfig is process-global: leave a single run's, as every make_cfg test does
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.RUN
        HydraConfig.instance().set_config(cfg)
    assert again["name"] == "base-s0-j0" and again["group"] == f"{sweep_id(tmp_path / 'second')}/base" != runs[0].group


def test_sync_command_covers_nested_runs_and_none(tmp_path: Path) -> None:
    assert sync_command(tmp_path) is None  # a sweep without offline runs prints nothing
    (tmp_path / "0" / "wandb" / "offline-run-1-a").mkdir(parents=True)
    (tmp_path / "1" / "rounds" / "round0" / "wandb" / "offline-run-1-b").mkdir(parents=True)
    assert sync_command(tmp_path) == (f"wandb sync {tmp_path}/*/wandb/offline-run-* "
                                      f"{tmp_path}/*/rounds/round0/wandb/offline-run-*")  # fmt: skip


@pytest.mark.parametrize("value", [None, False, True, "all"])
def test_log_model_takes_a_boolean_or_all(value) -> None:
    assert check_log_model(value) == (value or False)


@pytest.mark.parametrize("value", ["sometimes", 1, 0, "true"])
def test_log_model_refuses_anything_else(value) -> None:
    with pytest.raises(ConfigError, match="logger.wandb.log_model must be true, false or all"):
        check_log_model(value)


def test_oracle_summary_is_a_named_run_with_group_and_config(tmp_path: Path) -> None:
    from harness.oracle.report import log_wandb
    from harness.run.wandb_logger import _wait_for_exit_record

    rows = [{"candidate": "mixed3b_5x5", "gain_val_loss": 0.1}]
    log_wandb(tmp_path, rows, [], "offline", name="base-s0-oracle", group="oracle/base", config={"steps": 8})
    # wandb's finish() returns before its service has written the file's end: wait for the exit record
    assert _wait_for_exit_record(next((tmp_path / "wandb").glob("offline-run-*")), timeout=20)
    run = read_offline_run(tmp_path)
    assert (run.job_type, run.name, run.group, run.config["steps"]) == ("oracle", "base-s0-oracle", "oracle/base", 8)
    assert run.summary["oracle/candidates/_type"] == "table-file"


def test_grow_loop_rounds_are_grow_runs_in_the_chains_group(make_cfg, tmp_path: Path) -> None:
    from harness.grow.rounds import round_loggers
    from harness.train import _loggers

    # a single run's Hydra state (HydraConfig is process-global: no earlier test's sweep may leak in)
    cfg = make_cfg("+logger.wandb.name=gradmax-s1-r2", "logger.wandb.group=gradmax", "logger.wandb.job_type=grow")
    wandb_cfg = {"_target_": "harness.run.wandb_logger.make_wandb_logger", "group": None, "job_type": "train"}
    job = {"variant": "gradmax", "seed": 1, "logger": {"wandb": wandb_cfg, "csv": None}}
    assert round_loggers(job, 2) == {"wandb": {**wandb_cfg, "job_type": "grow", "group": "gradmax",
                                               "name": "gradmax-s1-r2"}}  # fmt: skip
    assert round_loggers({**job, "logger": None}, 2) == {}  # experiment=grow_loop's default: no wandb
    # a name and group set in the logger config (as a round's) win over the run's own `<variant>-s<seed>`
    (logger,) = _loggers(cfg, "gradmax/round2", {}, tmp_path)
    logger.finish()
    run = read_offline_run(tmp_path / "run")
    assert (run.name, run.group, run.job_type) == ("gradmax-s1-r2", "gradmax", "grow")
