"""A WandbLogger that works with no account and no network: offline by default, never prompting.

Why not plain `WandbLogger(offline=...)`: the choice online/offline must follow whether the user has
configured wandb (API key in the environment or a `wandb login` netrc entry), an unreachable server
must not hang or kill the run, and the offline files must land inside the run directory so that one
folder holds one run. We start the wandb run ourselves and hand it to Lightning's logger.
"""

from __future__ import annotations

import logging
import netrc
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger

from harness.errors import ConfigError

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


def wandb_configured(env: Mapping[str, str] | None = None) -> bool:
    """True when wandb has credentials: WANDB_API_KEY, or a netrc entry for the wandb host."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(env.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str, env: Mapping[str, str] | None = None) -> str:
    """The wandb mode to use: WANDB_MODE wins, then the config; `auto` = online iff configured."""
    env = os.environ if env is None else env
    if mode not in MODES:
        raise ConfigError(f"unknown logger.wandb.mode '{mode}'; valid: {', '.join(MODES)}")
    forced = env.get("WANDB_MODE")
    if forced:
        return {"dryrun": "offline", "run": "online"}.get(forced, forced)
    if mode == "auto":
        return "online" if wandb_configured(env) else "offline"
    return mode


def make_wandb_logger(
    save_dir: str,
    project: str = "harness",
    entity: str | None = None,
    mode: str = "auto",
    group: str | None = None,
    job_type: str = "train",
    tags: Sequence[str] = (),
    name: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    init_timeout: float = 30.0,
) -> WandbLogger:
    """Start a wandb run (online, falling back to offline on failure) and wrap it for Lightning.

    Usage: ``make_wandb_logger(save_dir="outputs/run", group="base", run_config=resolved_cfg)``
    """
    import wandb

    resolved = resolve_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    init = dict(
        dir=str(save_dir),
        project=project,
        entity=entity,
        group=group,
        job_type=job_type,
        tags=list(tags),
        name=name,
        config=dict(run_config or {}),
        reinit="finish_previous",
    )
    settings = wandb.Settings(silent=True, console="off", init_timeout=init_timeout, x_disable_stats=True)
    wandb_dir = Path(save_dir) / "wandb"
    before = set(wandb_dir.glob("run-*"))
    try:
        run = wandb.init(mode=resolved, settings=settings, **init)
    except Exception as err:  # network down, bad key, server error: keep the run, log offline
        if resolved != "online":
            raise
        log.warning("wandb online init failed (%s); logging offline instead", str(err).splitlines()[0])
        for partial in set(wandb_dir.glob("run-*")) - before:  # the failed attempt's files: not a run
            shutil.rmtree(partial, ignore_errors=True)
        resolved = "offline"
        run = wandb.init(mode=resolved, settings=settings, **init)
    logger = WandbLogger(experiment=run, save_dir=str(save_dir), project=project)
    logger.wandb_mode = resolved  # the run record reports where the data went
    return logger
