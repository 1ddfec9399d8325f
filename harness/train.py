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
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.facts.errors import config_error
from harness.growth.carry import growth_from_config
from harness.growth.widen_init import init_from_config
from harness.run import distributed
from harness.run.builders import (
    CONF_DIR,
    build_model,
    build_probes,
    check_probe_layers,
    checkpoint_meta,
    control_seed,
    fresh_model_factory,
    model_summary,
    summary_metrics,
)
from harness.run.progress import progress_callbacks, testing_line
from harness.run.quiet import silence
from harness.run.recipes import expand_recipes
from harness.run.records import RecordCallback, RunRecord
from harness.run.resume import check_matches, load_checkpoint, resume_config
from harness.run.validate import check_config, check_missing
from harness.run.variant import shared_sweep_keys, variant_name

log = logging.getLogger("harness.train")


def _variant(cfg: DictConfig) -> str:
    """`cfg.variant`, else derived from the overrides (in a sweep minus the settings all its jobs share, in a single
    run minus its budget: see harness.run.variant)."""
    if cfg.get("variant"):
        return str(cfg.variant)
    if not HydraConfig.initialized():
        return "base"
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    shared = shared_sweep_keys(hc.sweep.dir) if multirun else []
    return variant_name(hc.overrides.task, shared, single=not multirun)


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def _wandb_id(record: RunRecord) -> str | None:
    return (record.data.get("wandb") or {}).get("id")


def _loggers(
    cfg: DictConfig, variant: str, config: dict[str, Any], run_dir: Path, resume_id: str | None = None
) -> list[Any]:
    loggers = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if lg_cfg is None:
            continue
        extra: dict[str, Any] = {}
        if str(lg_cfg.get("_target_", "")).endswith("make_wandb_logger"):
            names = _wandb_names(cfg, variant)
            extra = {"run_config": {**config, "variant": variant, "sweep": names.pop("sweep")}, **names}
            if resume_id:
                extra["run_id"] = resume_id  # the resumed run continues the same wandb run
            for key in ("group", "name"):  # set in the logger config (e.g. by a grow-loop round): that one wins
                if lg_cfg.get(key) is not None:
                    extra.pop(key)
        # Partial first: instantiate would otherwise recurse into the run config's own `_target_`s.
        loggers.append(hydra.utils.instantiate(lg_cfg, _partial_=True)(**extra))
        log.info("logger %s ready", name)
    return loggers


def _wandb_names(cfg: DictConfig, variant: str) -> dict[str, Any]:
    """wandb name `<variant>-s<seed>[-j<job>]`, group sweep + variant, tags + experiment/recipe/sweep (wandb_layout)."""
    from harness.run.wandb_layout import hydra_sweep, run_group, run_name, run_tags

    sweep, job = hydra_sweep()
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    recipes = [key for key in ("curve_widen", "random_tweak") if cfg.get(key) is not None]
    tags = run_tags(list(cfg.tags), choices, recipes, sweep)
    return {"name": run_name(variant, cfg.seed, job), "group": run_group(variant, sweep), "tags": tags, "sweep": sweep}


def _callbacks(cfg: DictConfig, with_logger: bool) -> list[pl.Callback]:
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # Lightning refuses an LR monitor without a logger; `logger=null` must still train.
    return [c for c in callbacks if with_logger or not isinstance(c, pl.callbacks.LearningRateMonitor)]


def _probe_callback(cfg: DictConfig, record: RunRecord, run_dir: Path, make_model) -> pl.Callback | None:
    """The ProbeCallback for the selected probes (`probes=[curves,cka]`), or None when none are selected."""
    from harness.probes.callback import ProbeCallback

    probes = build_probes(cfg)
    if not probes:
        return None
    settings = OmegaConf.to_container(cfg.probing, resolve=True) if cfg.get("probing") else {}
    from harness.facts.overrides import flatten_widen

    widen = flatten_widen(cfg.model.widen) if cfg.model.get("widen") else {}  # layer2.0.conv1, not nested keys
    return ProbeCallback(
        probes, record=record, run_dir=run_dir, seed=cfg.seed, widen=widen, make_model=make_model, **settings
    )


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
    check_missing(cfg)
    silence(bool(cfg.get("verbose")))
    run_dir = output_dir(cfg)
    variant = _variant(cfg)
    tweak = expand_recipes(cfg)  # curve_widen / random_tweak -> model.widen / model.insert, before recording
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)  # present only when composed with return_hydra_config (tests)
    ckpt = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if distributed.is_rank_zero():
        distributed.clear_failure(run_dir)  # an earlier attempt's DDP failure (other ranks start inside trainer.fit)
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
            grown = init_from_config(cfg.model, net, datamodule)  # widen_init gradmax / tiny read training batches
            if grown is not None:
                record.update(widen_init=grown)
            check_probe_layers(cfg, net)
            meta = checkpoint_meta(cfg, datamodule.num_classes, variant)  # every checkpoint rebuilds from this
            # Partial first: instantiate would otherwise recurse into the `_target_` inside `meta`.
            make_module = hydra.utils.instantiate(cfg.module, _partial_=True)
            module = make_module(net=net, class_names=datamodule.classes, checkpoint_meta=meta)
            module.growth = growth_from_config(cfg.model, net, datamodule.image_size)  # carry_optimizer, new_lr_scale
            if ckpt is not None:
                check_matches(ckpt, module, cfg.ckpt_path)
            summary = model_summary(net, (cfg.get("probing") or {}).get("layers"), datamodule.image_size)
            record.update(model=summary, classes=list(datamodule.classes))
            resume_id = _wandb_id(record) if cfg.get("resume") else None
            loggers = _loggers(cfg, variant, config, run_dir, resume_id=resume_id)
            callbacks = [*_callbacks(cfg, bool(loggers)), RecordCallback(record), distributed.FirstFailure(run_dir)]
            make_model = fresh_model_factory(cfg, datamodule.num_classes, datamodule.image_size, control_seed(cfg.seed))
            probe_cb = _probe_callback(cfg, record, run_dir, make_model)
            if probe_cb is not None:
                if cfg.get("ckpt_path"):  # the seeded initial weights, before the checkpoint replaces them
                    probe_cb.reference = copy.deepcopy(net).eval()
                callbacks.append(probe_cb)
            bars, bar_on = progress_callbacks(bool(cfg.trainer.get("enable_progress_bar", True)))
            trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=[*callbacks, *bars],
                                              enable_progress_bar=bar_on)  # fmt: skip
            for lg in loggers:  # constants: wandb's summary (a column, not a one-point chart); other loggers' rows
                if hasattr(lg, "log_summary"):
                    lg.log_summary(summary_metrics(summary))
                else:
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
                if distributed.is_rank_zero():
                    log.info("%s", testing_line(trainer))
                if trainer.world_size > 1:  # DDP: each rank tests the whole set, unpadded (distributed.unsharded)
                    datamodule.setup("test")
                    test = {"dataloaders": distributed.unsharded(datamodule.test_dataloader())}
                else:
                    test = {"datamodule": datamodule}
                trainer.test(module, ckpt_path=paths["best"], verbose=False, weights_only=True, **test)
                metrics.update(_scalars(trainer))
            record.update(status="finished")
            return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule, "record": record}
    except BaseException as err:
        distributed.note_failure(run_dir, err, record, trainer)  # DDP: the first failing rank's cause
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
    if not distributed.is_rank_zero():  # other DDP ranks hold a dummy wandb run
        return None
    for lg in loggers:
        mode = getattr(lg, "wandb_mode", None)
        if mode is not None:
            run = lg.experiment
            return {"mode": mode, "id": run.id, "dir": str(Path(run.dir).parent), "group": run.group, "name": run.name}
    return None


def _report(err: BaseException, cfg: DictConfig) -> int:
    """One `error:` line on stderr (the traceback goes to <run dir>/traceback.txt); returns the exit code."""
    bad = config_error(err)
    if bad is not None:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    earlier = distributed.other_rank_error(output_dir(cfg))  # DDP: our error is a consequence of that one
    if earlier is not None:
        if earlier:
            print(f"error: {earlier}", file=sys.stderr)
        return 1
    where = output_dir(cfg) / distributed.traceback_name()
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text("".join(traceback.format_exception(err)))
        saved = f" (traceback: {where})"
    except OSError:
        saved = ""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    print(f"error: {distributed.rank_prefix()}{type(err).__name__}: {first}{saved}", file=sys.stderr)
    return 1


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if cfg.get("resume"):
            cfg = resume_config(cfg, list(HydraConfig.get().overrides.task))
        if cfg.get("grow") is not None:  # experiment=grow_loop: this job is a chain of rounds (harness.grow.loop)
            from harness.grow.loop import run_chain

            metrics = run_chain(cfg, train)
            data = RunRecord.load(output_dir(cfg))
        else:
            metrics, objects = train(cfg)
            data = objects["record"].data
    except Exception as err:
        if multirun:
            raise  # Hydra records the failed job and runs the others (docs/training-and-variants.md, "Sweeps")
        raise SystemExit(_report(err, cfg)) from None
    from harness.run.summary import print_summary

    if distributed.is_rank_zero():
        print_summary(data, output_dir(cfg))
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or math.isnan(value) else value


def main() -> float | None:
    """`harness-train`: check the command line's overrides (one-line errors with suggestions), then run."""
    from harness.run.command_line import check_command_line

    problem = check_command_line(sys.argv[1:], CONF_DIR, "train")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    from harness.run.resume import resume_argv

    sys.argv = [sys.argv[0], *resume_argv(sys.argv[1:])]  # a resume writes into its own run folder only
    return _hydra_main()


# Built in harness.run.builders (shared with harness-probe); importable from here as before.
__all__ = ["CONF_DIR", "build_model", "build_probes", "config_error", "fresh_model_factory", "main",
           "model_summary", "output_dir", "summary_metrics", "train"]  # fmt: skip


if __name__ == "__main__":
    main()
