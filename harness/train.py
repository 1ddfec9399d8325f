"""Entry point: `harness-train [overrides]` (same as `python -m harness.train`).

Why a pure `train(cfg)` behind a thin `@hydra.main`: tests, sweeps and scripts call the same
function with a composed config; the wrapper only turns bad input into a one-line error and returns
the metric a Hydra sweeper optimises.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.errors import ConfigError
from harness.recipes import expand_recipes
from harness.records import RecordCallback, RunRecord
from harness.variant import shared_sweep_keys, variant_name

log = logging.getLogger("harness.train")


def _variant(cfg: DictConfig) -> str:
    """`cfg.variant`, else derived from the overrides (in a sweep, minus the settings all its jobs share)."""
    if cfg.get("variant"):
        return str(cfg.variant)
    if not HydraConfig.initialized():
        return "base"
    hc = HydraConfig.get()
    shared = shared_sweep_keys(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else []
    return variant_name(hc.overrides.task, shared)


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def build_model(cfg: DictConfig, num_classes: int, image_size: int) -> torch.nn.Module:
    """Instantiate `cfg.model`, filling `num_classes` from the data when it is null."""
    kwargs = {"num_classes": num_classes} if cfg.model.get("num_classes") is None else {}
    net = hydra.utils.instantiate(cfg.model, **kwargs)
    if hasattr(net, "check_input_size"):
        net.check_input_size(image_size)
    return net


def model_summary(net: torch.nn.Module) -> dict[str, Any]:
    """Parameter counts and per-layer channels: the first thing to compare across architecture variants."""
    from harness.models import layers

    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"params/total": total, "params/trainable": trainable, "channels": layers(net)}


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """`model_summary` as flat logger keys: model/params/total, model/params/trainable, model/channels/<layer>."""
    flat = {f"model/{k}": v for k, v in summary.items() if k.startswith("params/")}
    flat.update({f"model/channels/{k}": v for k, v in summary["channels"].items()})
    return flat


def _loggers(cfg: DictConfig, variant: str, config: dict[str, Any], run_dir: Path) -> list[Any]:
    loggers = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if lg_cfg is None:
            continue
        extra: dict[str, Any] = {}
        if str(lg_cfg.get("_target_", "")).endswith("make_wandb_logger"):
            extra = {"run_config": config, "tags": list(cfg.tags), "name": run_dir.name}
            if lg_cfg.get("group") is None:
                extra["group"] = variant
        # Partial first: instantiate would otherwise recurse into the run config's own `_target_`s.
        loggers.append(hydra.utils.instantiate(lg_cfg, _partial_=True)(**extra))
        log.info("logger %s ready", name)
    return loggers


def _callbacks(cfg: DictConfig, with_logger: bool) -> list[pl.Callback]:
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # Lightning refuses an LR monitor without a logger; `logger=null` must still train.
    return [c for c in callbacks if with_logger or not isinstance(c, pl.callbacks.LearningRateMonitor)]


def build_probes(cfg: DictConfig) -> dict[str, Any]:
    """The probes selected in `cfg.probes` (`probes=[curves,cka]`), built from their configs, in config order."""
    return {
        name: hydra.utils.instantiate(p_cfg)
        for name, p_cfg in (cfg.get("probes") or {}).items()
        if isinstance(p_cfg, DictConfig) and "_target_" in p_cfg
    }


def _probe_callback(cfg: DictConfig, record: RunRecord, run_dir: Path, make_model) -> pl.Callback | None:
    """The ProbeCallback for the selected probes (`probes=[curves,cka]`), or None when none are selected."""
    from harness.probes.callback import ProbeCallback

    probes = build_probes(cfg)
    if not probes:
        return None
    settings = OmegaConf.to_container(cfg.probing, resolve=True) if cfg.get("probing") else {}
    widen = OmegaConf.to_container(cfg.model.widen, resolve=True) if cfg.model.get("widen") else {}
    return ProbeCallback(probes, record=record, run_dir=run_dir, seed=cfg.seed, widen=widen,
                         make_model=make_model, **settings)


def fresh_model_factory(cfg: DictConfig, num_classes: int, image_size: int, seed: int):
    """A function building the run's architecture with a fresh, seeded random init (probe controls)."""

    def make() -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_model(cfg, num_classes, image_size)

    return make


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train one variant and test it; returns (metrics, objects). The run record is always written."""
    run_dir = output_dir(cfg)
    variant = _variant(cfg)
    tweak = expand_recipes(cfg)  # curve_widen / random_tweak -> model.widen / model.insert, before recording
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)  # present only when composed with return_hydra_config (tests)
    record = RunRecord(run_dir, variant=variant, seed=cfg.seed, tags=list(cfg.tags), config=config)
    if tweak is not None:
        record.update(random_tweak=tweak)
    record.save()  # even a run that fails during setup leaves its config and error behind
    loggers: list[Any] = []
    try:
        with record.track():
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            datamodule = hydra.utils.instantiate(cfg.data)
            net = build_model(cfg, datamodule.num_classes, datamodule.image_size)
            module = hydra.utils.instantiate(cfg.module, net=net, class_names=datamodule.classes)
            summary = model_summary(net)
            record.update(model=summary, classes=list(datamodule.classes))
            loggers = _loggers(cfg, variant, config, run_dir)
            callbacks = [*_callbacks(cfg, bool(loggers)), RecordCallback(record)]
            make_model = fresh_model_factory(cfg, datamodule.num_classes, datamodule.image_size, cfg.seed + 10_000)
            probe_cb = _probe_callback(cfg, record, run_dir, make_model)
            if probe_cb is not None:
                callbacks.append(probe_cb)
            trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
            for lg in loggers:
                lg.log_metrics(summary_metrics(summary), step=0)
            record.update(wandb=_wandb_info(loggers))
            log.info("variant %s: %d parameters", variant, summary["params/total"])

            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
            metrics = _scalars(trainer)
            # Read before testing: loading the best checkpoint restores the callback's older state.
            ckpt = trainer.checkpoint_callback
            paths = {k: getattr(ckpt, f"{k}_model_path", "") or None for k in ("best", "last")}
            record.update(checkpoints=paths)
            if cfg.get("test"):
                trainer.test(module, datamodule=datamodule, ckpt_path=paths["best"], verbose=False)
                metrics.update(_scalars(trainer))
            record.update(status="finished")
            return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule, "record": record}
    finally:
        for lg in loggers:
            if hasattr(lg, "experiment") and hasattr(lg.experiment, "finish"):
                lg.experiment.finish(exit_code=0 if record.data["status"] == "finished" else 1)


def _scalars(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def _wandb_info(loggers: list[Any]) -> dict[str, Any] | None:
    for lg in loggers:
        mode = getattr(lg, "wandb_mode", None)
        if mode is not None:
            run = lg.experiment
            return {"mode": mode, "id": run.id, "dir": str(Path(run.dir).parent), "group": run.group}
    return None


def config_error(err: BaseException) -> ConfigError | None:
    """The ConfigError behind `err`, looking through Hydra's InstantiationException wrapping."""
    while err is not None:
        if isinstance(err, ConfigError):
            return err
        err = err.__cause__ or err.__context__
    return None


# An absolute path: console scripts and `python -m` both find the configs (Hydra resolves relative paths
# against the calling module, which differs between the two).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, _ = train(cfg)
    except Exception as err:
        bad = config_error(err)
        if bad is None or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {bad}", file=sys.stderr)
        raise SystemExit(2) from None
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or math.isnan(value) else value


if __name__ == "__main__":
    main()
