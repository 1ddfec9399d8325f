"""wandb goes online only when configured, and never prompts or fails a run when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.facts.errors import ConfigError
from harness.run.wandb_logger import make_wandb_logger, resolve_mode, wandb_configured
from harness.run.wandb_offline import read_offline_run


def test_auto_is_offline_without_credentials(tmp_path: Path) -> None:
    env = {"NETRC": str(tmp_path / "missing")}
    assert not wandb_configured(env)
    assert resolve_mode("auto", env) == "offline"


def test_auto_is_online_with_a_key_or_a_login(tmp_path: Path) -> None:
    assert resolve_mode("auto", {"WANDB_API_KEY": "x" * 40, "NETRC": str(tmp_path / "none")}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert resolve_mode("auto", {"NETRC": str(netrc)}) == "online"
    # a login for another host does not count
    assert resolve_mode("auto", {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"}) == "offline"


def test_wandb_mode_env_wins_and_bad_mode_lists_choices() -> None:
    assert resolve_mode("online", {"WANDB_MODE": "offline"}) == "offline"
    assert resolve_mode("auto", {"WANDB_MODE": "dryrun"}) == "offline"
    with pytest.raises(ConfigError, match="auto, online, offline, disabled"):
        resolve_mode("sometimes", {})


def test_unreachable_server_falls_back_to_offline(tmp_path: Path, monkeypatch) -> None:
    # A configured key but no server: init must give up quickly and log offline into the run dir.
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: connection refused at once
    logger = make_wandb_logger(save_dir=str(tmp_path), group="g", init_timeout=5)
    try:
        assert logger.wandb_mode == "offline"
        logger.log_metrics({"val/loss": 0.5}, step=0)
    finally:
        logger.experiment.finish()
    run = read_offline_run(tmp_path)
    assert run.summary["val/loss"] == 0.5 and run.group == "g"
