"""harness-suggest's thresholds: ``conf/suggest.yaml`` with ``key=value`` overrides, and rule weights calibrated
from an oracle's ``signals.csv`` on top.

Why a module of its own: the suggest CLI, the oracle (which scores every rule as a signal) and the grow loop all
read the same thresholds; a library module serves them all, so no library imports a command-line module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.facts.conf_dir import CONF_DIR
from harness.suggest.calibrate import weights_from_signals

CONFIG = Path(CONF_DIR) / "suggest.yaml"


def load_config(overrides: list[str] | None = None) -> DictConfig:
    """conf/suggest.yaml with ``key=value`` overrides; an unknown key is an error (struct mode)."""
    cfg = OmegaConf.load(CONFIG)
    for item in overrides or []:
        key = item.split("=", 1)[0]
        if "=" not in item or OmegaConf.select(cfg, key, default=KeyError) is KeyError:
            raise ValueError(
                f"unknown threshold {item!r}: write key=value with a key of {CONFIG.name}: {', '.join(cfg)}"
            )
    OmegaConf.set_struct(cfg, True)
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides or [])))


def load_with_weights(path: str | Path | None, overrides: list[str] | None = None) -> Any:
    """conf/suggest.yaml (+ ``key=value`` overrides) with the rule weights calibrated from ``path`` on top."""
    cfg = load_config(overrides)
    if path:
        weights, _ = weights_from_signals(path)
        OmegaConf.set_struct(cfg, False)
        cfg.weights = OmegaConf.merge(cfg.weights, weights)
        OmegaConf.set_struct(cfg, True)
    return cfg
