"""Continue a killed run (`harness-train resume=<run dir>`) and vet checkpoints before Lightning reads them.

Why the saved config and not a recomposed one: the run must continue exactly as it started (same
architecture, data, seed), even if the config files changed since. Lightning restores weights,
optimizer, scheduler and the epoch/step counters from `last.ckpt`; the data order is a function of
(seed, epoch) (see `harness.data.world_datamodule.EpochShuffle`), so the continued run sees the same
batches the uninterrupted one would have.

Why vet checkpoints first: Lightning's own errors for an empty, corrupt or wrong-architecture file are
deep tracebacks; here each is one line naming the file and, for a mismatch, the first differing keys.
Checkpoints are always read with `weights_only=True`, so a file can never execute pickled code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from harness.facts.errors import ConfigError
from harness.facts.runs import RECORD_NAME, load_record

log = logging.getLogger(__name__)

# Keys a resumed run never takes from the command line: they say which run to continue.
_NOT_OVERRIDABLE = ("resume", "hydra", "paths", "ckpt_path")
# Run records saved before the run plumbing moved to harness/run/ name its old modules in their `_target_`s.
_MOVED = {f"harness.{m}.": f"harness.run.{m}." for m in ("module", "callbacks", "wandb_logger")}


def _moved_targets(node: Any) -> Any:
    """A saved config (plain dicts and lists) whose `_target_`s name the modules' homes of today."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            old = next((o for o in _MOVED if target.startswith(o)), None)
            node = {**node, "_target_": _MOVED[old] + target[len(old) :]} if old else node
        return {k: _moved_targets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_moved_targets(v) for v in node]
    return node


def resume_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The saved config of run `cfg.resume`, with the command line's other `overrides` applied on top."""
    run_dir = Path(str(cfg.resume)).expanduser().resolve()
    record_path = run_dir / RECORD_NAME
    if not record_path.is_file():
        raise ConfigError(
            f"resume={run_dir}: no {RECORD_NAME} there; resume takes a run directory written by "
            f"harness-train (outputs/<date>/<time> or multirun/<date>/<time>/<job>)"
        )
    try:
        record = load_record(record_path)
        saved = OmegaConf.create(_moved_targets(record["config"]))
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"resume={run_dir}: {RECORD_NAME} is unreadable ({err}); cannot resume this run") from None
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError(
            f"resume={run_dir}: no checkpoints/last.ckpt (the run stopped before its first epoch "
            f"ended); start it again without resume"
        )
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element().lstrip("+~")
        if key.split(".")[0] in _NOT_OVERRIDABLE or override.is_delete():
            continue
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        log.warning("resume: %s overridden on top of the saved config", key)
    with open_dict(saved):
        saved.resume = str(run_dir)
        saved.ckpt_path = str(last)
        saved.paths.output_dir = str(run_dir)
        saved.variant = record.get("variant") or saved.get("variant")
        for recipe in ("curve_widen", "random_tweak"):  # already folded into model.widen/insert when saved
            if recipe in saved:
                saved[recipe] = None
    return saved


def resume_argv(argv: list[str]) -> list[str]:
    """`argv` with the resumed run's folder as Hydra's run folder, so a resume writes nowhere else.

    Without it Hydra opens a fresh `outputs/<date>/<time>/` (`.hydra/` plus a `train.log` holding the resumed
    half of the log). With it the log appends to the run's own `train.log` (Hydra's file handler appends), and
    `hydra.output_subdir=null` keeps the run's original `.hydra/` (its launch command) untouched. A path that
    is not a run folder is left alone: `resume_config` reports it.
    """
    if any(arg in ("-m", "--multirun") for arg in argv):
        return argv
    value = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("resume=")), None)
    if not value:
        return argv
    run_dir = Path(value.strip("'\"")).expanduser().resolve()
    if not (run_dir / "record.json").is_file() or "'" in str(run_dir):
        return argv
    kept = [arg for arg in argv if not arg.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*kept, f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null"]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, read safely, or a one-line ConfigError saying what is wrong."""
    from harness.models.pretrained import load_torch_file

    ckpt = load_torch_file(path, "ckpt_path")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = ", ".join(list(ckpt)[:5]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConfigError(f"ckpt_path={path} is not a Lightning checkpoint (no 'state_dict'; found {found})")
    return ckpt


def check_matches(ckpt: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """ConfigError listing the first missing/unexpected keys and shape differences, if any."""
    from harness.models.pretrained import check_keys

    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: v for k, v in ckpt["state_dict"].items() if hasattr(v, "shape")}
    check_keys(found, expected, f"ckpt_path={path} (another architecture?)")
