"""wandb never costs a run: a failing or killed wandb mid-run gives one warning with the sync hint and a
complete run record; a setting wandb rejects falls back to no wandb; a bad mode is a one-line ConfigError."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl

from harness.facts.errors import ConfigError
from harness.run.records import RunRecord
from harness.run.wandb_logger import make_wandb_logger
from harness.run.wandb_offline import read_offline_run
from harness.train import train

FAILED = re.compile(r"wandb logging failed at step \d+: .+; the run continues and its record is complete; "
                    r"offline files so far: (\S+); sync with `wandb sync \1` or rerun logging from the record")


def _children(pid: int) -> list[int]:
    """Process ids below `pid` (read from /proc: no psutil here)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else 0
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found += [int(entry.name), *_children(int(entry.name))]
    return found


def _wandb_services() -> list[int]:
    services = []
    for pid in _children(os.getpid()):
        try:
            if b"wandb-core" in Path(f"/proc/{pid}/cmdline").read_bytes():
                services.append(pid)
        except OSError:
            continue
    return services


class KillWandbService(pl.Callback):
    """SIGKILLs this process's wandb-core service after the first training epoch (wandb dies mid-run)."""

    def __init__(self) -> None:
        self.killed: list[int] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != 0:
            return
        for pid in _wandb_services():
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in self.killed):
            assert time.monotonic() < deadline, "wandb-core did not die"
            time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    logger = "harness.run.wandb_logger"
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


def _check_finished(cfg, epochs: int, caplog: pytest.LogCaptureFixture) -> dict:
    record = RunRecord.load(cfg.paths.output_dir)
    assert record["status"] == "finished" and [e["epoch"] for e in record["epochs"]] == list(range(epochs))
    assert "test/acc" in record["test"] and record["wandb"]["mode"] == "offline"
    (warning,) = _warnings(caplog)  # one warning, however many calls were skipped
    folder = FAILED.fullmatch(warning).group(1)
    assert Path(folder).is_dir() and Path(folder).name.startswith("offline-run-")
    return record


def test_wandb_failing_mid_run_costs_one_warning(make_cfg, monkeypatch, caplog, one_thread) -> None:
    from wandb.sdk.wandb_run import Run

    original, calls = Run.log, []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise BrokenPipeError("wandb went away")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Run, "log", flaky)
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=2")
    with caplog.at_level(logging.WARNING, logger="harness.run.wandb_logger"):
        train(cfg)
    _check_finished(cfg, 2, caplog)
    assert "BrokenPipeError: wandb went away" in _warnings(caplog)[0]
    assert len(calls) == 3  # after the failure, wandb is left alone
    assert "model/params/total" in read_offline_run(cfg.paths.output_dir).summary  # what came before is kept


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the wandb service through /proc")
def test_killed_wandb_service_leaves_the_run_complete(make_cfg, caplog, tmp_path: Path, one_thread) -> None:
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=2",
                   "+callbacks.kill_wandb._target_=tests.test_logger_faults.KillWandbService")
    with caplog.at_level(logging.WARNING, logger="harness.run.wandb_logger"):
        _, objects = train(cfg)
    (killer,) = [c for c in objects["trainer"].callbacks if isinstance(c, KillWandbService)]
    assert killer.killed, "no wandb-core process found to kill"
    _check_finished(cfg, 2, caplog)
    # the next run in this process (a sweep's next job) starts a fresh service
    logger = make_wandb_logger(save_dir=str(tmp_path / "next"))
    logger.log_metrics({"val/loss": 0.25}, step=0)
    logger.experiment.finish()
    assert logger.failure is None and read_offline_run(tmp_path / "next").summary["val/loss"] == 0.25


def test_a_project_name_wandb_rejects_means_no_wandb_not_no_run(make_cfg, caplog, one_thread) -> None:
    cfg = make_cfg("logger=wandb", "logger.wandb.project=bad/name", "test=false")
    with caplog.at_level(logging.WARNING, logger="harness.run.wandb_logger"):
        train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    assert record["status"] == "finished" and len(record["epochs"]) == 1 and record["wandb"]["mode"] == "disabled"
    (warning,) = _warnings(caplog)
    assert warning.startswith("wandb could not start (UsageError: Invalid project name 'bad/name'")
    assert warning.endswith("fix logger.wandb.* and rerun logging from the record")


def test_an_unknown_mode_is_a_one_line_config_error(make_cfg, tmp_path: Path) -> None:
    # (harness.run.validate now catches it before the run starts; make_wandb_logger says the same to direct callers)
    with pytest.raises(ConfigError, match=r"logger.wandb.mode .*auto, online, offline, disabled.*'bogus'"):
        train(make_cfg("logger=wandb", "logger.wandb.mode=bogus"))
    direct = r"^unknown logger.wandb.mode 'bogus'; valid: auto, online, offline, disabled$"
    with pytest.raises(ConfigError, match=direct):
        make_wandb_logger(save_dir=str(tmp_path), mode="bogus")
