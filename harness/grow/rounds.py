"""One round of the grow loop as an ordinary `harness.train.train` run, and the checks around it.

Why each round is a plain harness-train run (``model.init_from=<last round's checkpoint>`` plus the round's
``model.widen``) rather than surgery on a live Lightning module: growth then goes through exactly the code
path the oracle checks (:func:`harness.oracle.candidates.continued_model`: ``surgery.transfer`` with zero
outgoing weights), every round leaves a normal record and checkpoint that harness-probe, harness-suggest
and the policies read, and nothing in `train` needed to change. The price is a fresh optimizer and LR
schedule per round; every policy pays it alike, so comparisons stay fair. Data splits are generated once
per process and shared between rounds (:mod:`harness.oracle.data`).

Seeds: round k trains with ``seed + ROUND_SEED_STRIDE * k``, so round 0 is exactly ``harness-train
seed=<seed>`` and later rounds see fresh batch orders (a restarted epoch would otherwise replay the same
first batches every round); every policy of one seed gets the same seeds, hence the same base model and
the same batch order in every round. :class:`FirstBatches` records what the loader actually delivered.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from harness.facts.errors import ConfigError
from harness.oracle.launch import SHARED_DATA

ROUND_SEED_STRIDE = 100_003
ROUNDS_DIR = "rounds"
FINGERPRINT_BATCHES = 2  # batches whose labels (and an image checksum) are recorded per round
FINGERPRINT_LABELS = 16


def round_dir(job_dir: Path, k: int) -> Path:
    return job_dir / ROUNDS_DIR / f"round{k}"


def round_seed(seed: int, k: int) -> int:
    return int(seed) + ROUND_SEED_STRIDE * k


def shared_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data config wrapped so every round of this process reuses the generated splits."""
    if data.get("_target_") == SHARED_DATA:
        return dict(data)
    return {"_target_": SHARED_DATA, "target": data["_target_"], **{k: v for k, v in data.items() if k != "_target_"}}


def round_config(
    job: Mapping[str, Any],
    job_dir: Path,
    k: int,
    model: Mapping[str, Any],
    steps: int,
    probes: Sequence[str],
    test: bool,
) -> DictConfig:
    """The harness-train config of round ``k`` (``job``: the chain's resolved config, without ``hydra``)."""
    cfg = copy.deepcopy(dict(job))
    cfg.pop("grow", None)
    where = round_dir(job_dir, k)
    missing = [p for p in probes if p not in (job.get("probes") or {})]
    if missing:
        have = ", ".join(job.get("probes") or {}) or "none"
        raise ConfigError(f"grow.probes names {', '.join(missing)}, which the job's probes config lacks (has: {have});"
                          f" add them to the experiment's probes list (override /probes)")  # fmt: skip
    cfg.update(
        seed=round_seed(job["seed"], k),
        variant=f"{job.get('variant')}/round{k}",
        model=dict(model),
        data=shared_data(job["data"]),
        probes={p: job["probes"][p] for p in probes},
        test=bool(test),
        logger=round_loggers(job, k),  # wandb only (the chain's record is the result): job_type grow
    )
    cfg["paths"] = {**cfg["paths"], "output_dir": str(where)}
    cfg["probing"] = {**(cfg.get("probing") or {}), "every_n_epochs": 0}
    callbacks = {k_: v for k_, v in (cfg.get("callbacks") or {}).items() if k_ != "lr_monitor" and v is not None}
    if "model_checkpoint" in callbacks:
        callbacks["model_checkpoint"] = {**callbacks["model_checkpoint"], "dirpath": str(where / "checkpoints")}
    callbacks["first_batches"] = {"_target_": f"{__name__}.FirstBatches"}
    cfg["callbacks"] = callbacks
    cfg["trainer"] = {**cfg["trainer"], "default_root_dir": str(where), "max_steps": int(steps), "max_epochs": -1,
                      "val_check_interval": int(steps), "check_val_every_n_epoch": None, "num_sanity_val_steps": 0,
                      "enable_progress_bar": False}  # fmt: skip
    return OmegaConf.create(cfg)


def round_loggers(job: Mapping[str, Any], k: int) -> dict[str, Any]:
    """The job's wandb logger, if it has one, for round ``k``: a run of job_type `grow` named `<variant>-s<seed>-r<k>`
    in the chain's group (sweep + variant), so a chain's rounds chart together. Other loggers are left out."""
    from harness.run.wandb_layout import hydra_sweep, run_group, run_name

    sweep, num = hydra_sweep()
    variant = str(job.get("variant"))
    out = {}
    for name, lg in (job.get("logger") or {}).items():
        if lg and str(lg.get("_target_", "")).endswith("make_wandb_logger"):
            out[name] = {**lg, "job_type": "grow", "group": lg.get("group") or run_group(variant, sweep),
                         "name": f"{run_name(variant, job['seed'], num)}-r{k}"}  # fmt: skip
    return out


class FirstBatches(pl.Callback):
    """Keeps the labels of the first training batches and a checksum of their images: the batch order, as seen."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if len(self.seen) < FINGERPRINT_BATCHES:
            x, y = batch[0], batch[1]
            self.seen.append({"labels": y[:FINGERPRINT_LABELS].tolist(), "image_sum": float(x.double().sum())})


def first_batches(trainer: pl.Trainer) -> list[dict[str, Any]]:
    return next((cb.seen for cb in trainer.callbacks if isinstance(cb, FirstBatches)), [])


def logit_change(prev_ckpt: str, model_cfg: Mapping[str, Any], images: torch.Tensor) -> float:
    """Max |logit change| between the last round's trained network and the next round's network at step 0.

    Built exactly as the round's `train` builds it (``model_cfg`` with ``init_from``), compared in float64 as
    the oracle does (float32 summation order alone moves logits by ~3e-5).
    """
    import hydra

    from harness.models.build import load_net
    from harness.models.surgery import max_output_change

    before, record = load_net(prev_ckpt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        after = hydra.utils.instantiate(OmegaConf.create(dict(model_cfg)), num_classes=len(record["classes"]))
    return max_output_change(before.double(), after.double(), images.double())


def check_images(data: Mapping[str, Any], n: int) -> torch.Tensor:
    """``n`` validation images of the run's data in [0, 1], as the module feeds them to the network."""
    from harness.oracle.data import check_images as oracle_images

    images = oracle_images(dict(data), n)
    return images / 255.0 if float(images.max()) > 1.0 else images
