"""Entry point: `harness-probe ckpt=<path> [probes=...]` runs probes without training.

Why a separate command: researchers probe checkpoints they already have (earlier runs, pretrained
nets, torchvision models) and want the same keys and run record as a training run, so comparison
reads both alike. The results go to `record.json` in this command's run directory.

Pretrained weights need no training run: `harness-probe model=inception_v1 model.weights=inception5h.pth
image_size=224 probes=[curves] probing.layers=[conv2d2,mixed3a,mixed3b,mixed4a]`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from harness.facts.errors import config_error
from harness.facts.overrides import flatten_widen
from harness.models.build import load_net
from harness.probes.base import ProbeContext
from harness.probes.memory import limit_bytes, probe_layers
from harness.probes.probe_set import ProbeSet
from harness.probes.runner import record_outcomes, run_probes, save_outcomes
from harness.run.builders import CONF_DIR, build_model, build_probes, control_seed, fresh_model_factory, model_summary
from harness.run.records import RunRecord

log = logging.getLogger("harness.probe")


def probe(cfg: DictConfig) -> dict[str, Any]:
    """Build (or load) the model and probe set, run the selected probes, write the run record."""
    from harness.run.quiet import silence
    from harness.run.validate import check_missing

    silence(bool(cfg.get("verbose")))
    check_missing(cfg)
    run_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    record = RunRecord(run_dir, job_type="probe", variant=cfg.get("variant") or "probe", seed=cfg.seed, config=config)
    record.save()
    with record.track():
        if cfg.get("ckpt"):
            net, source = load_net(cfg.ckpt)  # the checkpoint describes itself (older ones: their run's record)
            data_cfg = OmegaConf.create(source["config"]["data"])
            model_cfg = OmegaConf.create({"model": source["config"]["model"]})
            arch_cfg = OmegaConf.create({"model": source.get("architecture") or source["config"]["model"]})
            record.update(source={"ckpt": str(cfg.ckpt), "variant": source.get("variant"), "seed": source.get("seed")})
        else:
            data_cfg, model_cfg = cfg.data, cfg
            arch_cfg = cfg
        if cfg.get("image_size"):  # e.g. 224 for Lucid's InceptionV1: probe set and curve stimuli at that size
            data_cfg = OmegaConf.merge(data_cfg, {"image_size": int(cfg.image_size)})
        datamodule = hydra.utils.instantiate(data_cfg)
        if not cfg.get("ckpt"):
            with torch.random.fork_rng():  # the same network on every run of one seed (the controls: seed + offset)
                torch.manual_seed(int(cfg.seed))
                net = build_model(cfg, datamodule.num_classes, datamodule.image_size)
        # Controls (random init, CKA reference): the same architecture with nothing loaded (fresh_model_factory).
        # Built from the architecture: a checkpoint's own init_from chain need not exist where it was copied to.
        seed = control_seed(cfg.seed)
        make_model = fresh_model_factory(arch_cfg, datamodule.num_classes, datamodule.image_size, seed)

        reference = load_net(cfg.reference)[0] if cfg.get("reference") else make_model()
        probes = build_probes(cfg)
        settings = cfg.probing
        probe_set = ProbeSet.from_datamodule(datamodule, n=settings.probe_set_size, seed=settings.probe_set_seed)
        widen_cfg = model_cfg.model.get("widen")
        widen = flatten_widen(widen_cfg) if widen_cfg else {}  # `layer2.0.conv1`, not Hydra's nested keys
        widen = {k: v for k, v in widen.items() if v > 0}  # units these edits added (pruning adds none)
        ctx = ProbeContext(
            model=net,
            layers=probe_layers(net, settings.layers, probe_set.images, settings.get("max_activation_gb")),
            probe_set=probe_set,
            reference=reference,
            make_model=make_model,
            widen=widen,
            seed=cfg.seed,
            batch_size=settings.batch_size,
            max_activation_bytes=limit_bytes(settings.get("max_activation_gb")),
        )
        outcomes = run_probes(probes, ctx, settings.budget_s, timeout_s=settings.get("probe_timeout_s"))
        save_outcomes(outcomes, run_dir)
        record.update(model=model_summary(net, ctx.layers, datamodule.image_size), classes=list(datamodule.classes))
        record_outcomes(record, outcomes, epoch=None)
        _log_wandb(cfg, record, outcomes, config)
        record.update(status="finished")
        return record.data["metrics"]


def _log_wandb(cfg: DictConfig, record: RunRecord, outcomes: list, config: dict[str, Any]) -> None:
    """The round as a wandb run (job_type probe) in the probed run's group, named like it: `<variant>-s<seed>`."""
    lg_cfg = (cfg.get("logger") or {}).get("wandb")
    if lg_cfg is None:
        return
    from harness.facts.runs import record_of_checkpoint
    from harness.run.builders import summary_metrics
    from harness.run.wandb_layout import run_group, run_name

    source = record.data.get("source") or {}
    variant = source.get("variant") or record.data["variant"]
    seed = source.get("seed") if source.get("seed") is not None else cfg.seed
    found = record_of_checkpoint(cfg.ckpt) if cfg.get("ckpt") else None
    trained = (RunRecord.load(found.parent).get("wandb") or {}) if found else {}  # the run's own group
    group = lg_cfg.get("group") or trained.get("group") or run_group(variant)
    extra = {"name": run_name(variant, seed), "group": group, "job_type": "probe",
             "tags": list(cfg.tags), "run_config": {**config, "variant": variant, "source": source}}  # fmt: skip
    logger = hydra.utils.instantiate(lg_cfg, _partial_=True)(**extra)
    try:
        logger.log_probe_round(outcomes)
        logger.log_summary(summary_metrics(record.data["model"]))
        run = logger.experiment
        record.update(wandb={"mode": logger.wandb_mode, "id": run.id, "dir": str(Path(run.dir).parent),
                             "group": run.group, "name": run.name})  # fmt: skip
    finally:
        logger.finish(exit_code=0)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="probe")
def main(cfg: DictConfig) -> None:
    try:
        metrics = probe(cfg)
    except Exception as err:
        bad = config_error(err)
        if bad is None:
            raise
        print(f"error: {bad}", file=sys.stderr)
        raise SystemExit(2) from None
    from harness.run.summary import print_summary

    run_dir = Path(cfg.paths.output_dir)
    failed = sorted(k for k, v in metrics.items() if k.endswith("/failed") and v)
    log.info("%d probe metrics written to %s; failed probes: %s", len(metrics), run_dir / "record.json",
             ", ".join(failed) or "none")  # fmt: skip
    print_summary(RunRecord.load(run_dir), run_dir, title="harness-probe")


if __name__ == "__main__":
    main()
