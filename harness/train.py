"""Entry point: `harness-train [overrides]` (same as `python -m harness.train`).

Why a pure `train(cfg)` behind a thin `@hydra.main`: tests, sweeps and scripts call the same
function with a composed config; the wrapper only turns bad input into a one-line error and returns
the metric a Hydra sweeper optimises.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.conf_dir import CONF_DIR
from harness.errors import ConfigError
from harness.recipes import expand_recipes
from harness.records import RecordCallback, RunRecord
from harness.resume import check_matches, load_checkpoint, resume_config
from harness.validate import check_config
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
    from harness.models.custom import instantiate_model

    net = instantiate_model(cfg.model, image_size=image_size, **kwargs)
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


def _wandb_id(record: RunRecord) -> str | None:
    return (record.data.get("wandb") or {}).get("id")


def _loggers(cfg: DictConfig, variant: str, config: dict[str, Any], run_dir: Path,
             resume_id: str | None = None) -> list[Any]:
    loggers = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if lg_cfg is None:
            continue
        extra: dict[str, Any] = {}
        if str(lg_cfg.get("_target_", "")).endswith("make_wandb_logger"):
            extra = {"run_config": config, "tags": list(cfg.tags), "name": run_dir.name}
            if resume_id:
                extra["run_id"] = resume_id  # the resumed run continues the same wandb run
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
    from harness.models.custom import flatten_widen

    widen = flatten_widen(cfg.model.widen) if cfg.model.get("widen") else {}  # layer2.0.conv1, not nested keys
    return ProbeCallback(probes, record=record, run_dir=run_dir, seed=cfg.seed, widen=widen,
                         make_model=make_model, **settings)


def fresh_model_factory(cfg: DictConfig, num_classes: int, image_size: int, seed: int):
    """A function building the run's architecture with a fresh, seeded random init (probe controls)."""

    from harness.models.pretrained import architecture

    # The same architecture with nothing loaded: `weights` / `init_from` would make the control the trained net.
    arch = OmegaConf.create({"model": architecture(cfg.model)})

    def make() -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_model(arch, num_classes, image_size)

    return make


def _check_probe_layers(cfg: DictConfig, net: torch.nn.Module) -> None:
    layers = (cfg.get("probing") or {}).get("layers") if cfg.get("probes") else None
    if not layers:
        return
    from harness.models import hook_points

    valid = list(hook_points(net))
    modules = {name for name, _ in net.named_modules() if name}  # any dotted module path is a layer too
    unknown = [name for name in layers if str(name).split(":")[0] not in {*valid, *modules}]
    if unknown:
        names = ", ".join(map(str, unknown))
        raise ConfigError(f"unknown layer(s) {names} in probing.layers; valid: {', '.join(valid)}")


def _open_record(cfg: DictConfig, run_dir: Path, variant: str, config: dict[str, Any]) -> RunRecord:
    if cfg.get("resume"):
        return RunRecord.reopen(run_dir)  # history kept; the saved config is the one in force
    record = RunRecord(run_dir, variant=variant, seed=cfg.seed, tags=list(cfg.tags), config=config)
    record.save()  # even a run that fails during setup leaves its config and error behind
    return record


def _checkpoint_paths(trainer: pl.Trainer | None) -> dict[str, str | None]:
    ckpt = trainer.checkpoint_callback if trainer is not None else None
    return {k: getattr(ckpt, f"{k}_model_path", "") or None for k in ("best", "last")}


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train one variant and test it; returns (metrics, objects). The run record is always written."""
    check_config(cfg)  # before anything is written: a typo must not clobber an earlier record
    run_dir = output_dir(cfg)
    variant = _variant(cfg)
    tweak = expand_recipes(cfg)  # curve_widen / random_tweak -> model.widen / model.insert, before recording
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)  # present only when composed with return_hydra_config (tests)
    ckpt = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    record = _open_record(cfg, run_dir, variant, config)
    if tweak is not None:
        record.update(random_tweak=tweak)
    loggers: list[Any] = []
    trainer: pl.Trainer | None = None
    try:
        with record.track():
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            datamodule = hydra.utils.instantiate(cfg.data)
            net = build_model(cfg, datamodule.num_classes, datamodule.image_size)
            _check_probe_layers(cfg, net)
            module = hydra.utils.instantiate(cfg.module, net=net, class_names=datamodule.classes)
            if ckpt is not None:
                check_matches(ckpt, module, cfg.ckpt_path)
            summary = model_summary(net)
            record.update(model=summary, classes=list(datamodule.classes))
            resume_id = _wandb_id(record) if cfg.get("resume") else None
            loggers = _loggers(cfg, variant, config, run_dir, resume_id=resume_id)
            callbacks = [*_callbacks(cfg, bool(loggers)), RecordCallback(record)]
            make_model = fresh_model_factory(cfg, datamodule.num_classes, datamodule.image_size, cfg.seed + 10_000)
            probe_cb = _probe_callback(cfg, record, run_dir, make_model)
            if probe_cb is not None:
                if cfg.get("ckpt_path"):  # the seeded initial weights, before the checkpoint replaces them
                    probe_cb.reference = copy.deepcopy(net).eval()
                callbacks.append(probe_cb)
            trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
            for lg in loggers:
                lg.log_metrics(summary_metrics(summary), step=0)
            wandb_info = _wandb_info(loggers)
            if wandb_info is not None or not cfg.get("resume"):  # a resume without wandb keeps the old run's id
                record.update(wandb=wandb_info)
            log.info("variant %s: %d parameters", variant, summary["params/total"])

            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            metrics = _scalars(trainer)
            # Read before testing: loading the best checkpoint restores the callback's older state.
            paths = _checkpoint_paths(trainer)
            record.update(checkpoints=paths)
            if cfg.get("test"):
                trainer.test(module, datamodule=datamodule, ckpt_path=paths["best"], verbose=False, weights_only=True)
                metrics.update(_scalars(trainer))
            record.update(status="finished")
            return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule, "record": record}
    except BaseException:
        if trainer is not None:  # a failed run still says where its last good weights are
            record.update(checkpoints=_checkpoint_paths(trainer))
            with contextlib.suppress(OSError):
                record.save()
        raise
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


def _report(err: BaseException, cfg: DictConfig) -> int:
    """One `error:` line on stderr (the traceback goes to <run dir>/traceback.txt); returns the exit code."""
    bad = config_error(err)
    if bad is not None:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    where = output_dir(cfg) / "traceback.txt"
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text("".join(traceback.format_exception(err)))
        saved = f" (traceback: {where})"
    except OSError:
        saved = ""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    print(f"error: {type(err).__name__}: {first}{saved}", file=sys.stderr)
    return 1


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if cfg.get("resume"):
            cfg = resume_config(cfg, list(HydraConfig.get().overrides.task))
        metrics, _ = train(cfg)
    except Exception as err:
        if multirun:
            raise  # Hydra records the failed job and runs the others (see README, "Sweeps")
        raise SystemExit(_report(err, cfg)) from None
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or math.isnan(value) else value


def main() -> float | None:
    """`harness-train`: check the command line's overrides (one-line errors with suggestions), then run."""
    from harness.overrides import check_command_line

    problem = check_command_line(sys.argv[1:], CONF_DIR, "train")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return _hydra_main()


if __name__ == "__main__":
    main()
