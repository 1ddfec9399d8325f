"""Train every (candidate, seed) job as one `harness-train` multirun through Hydra's launcher.

Why a generated config group: candidates differ in *which* keys they set (``model.widen.<target>``,
``model.insert``), which one sweep parameter cannot express; one small file per candidate in
``<out>/conf/oracle/<name>.yaml`` (found through ``hydra.searchpath``) sets the base run's whole model, data
and module (optimizer, schedule) config plus the edit, so the sweep is just ``+oracle=control,a,b seed=0,1,2``.
Hydra's launcher then runs it: ``hydra/launcher=joblib`` (the default here) locally in parallel,
``hydra/launcher=slurm`` on a cluster. Every job writes its own record.json, which is all the oracle reads back.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.facts import keys
from harness.facts.errors import ConfigError
from harness.facts.runs import RECORD_NAME, load_record
from harness.oracle.candidates import CONTROL, Candidate, continued_model, scratch_model

GROUP = "oracle"
SHARED_DATA = "harness.oracle.data.shared_splits"  # the base run's data module, splits shared within a worker
JOBS_DIR = "jobs"
# Every job: no probes, no test split, no checkpoints; validate once, after exactly `steps` steps.
JOB_OVERRIDES = ("probes=none", "test=false", "callbacks.model_checkpoint=null", "++trainer.enable_checkpointing=false",
                 "trainer.max_epochs=-1",
                 "trainer.check_val_every_n_epoch=null", "trainer.num_sanity_val_steps=0",
                 "trainer.enable_progress_bar=false")  # fmt: skip


@dataclass(frozen=True)
class JobResult:
    """One finished job: candidate name, seed, final validation loss and accuracy."""

    candidate: str
    seed: int
    val_loss: float
    val_acc: float


def write_group(
    out: Path, base_config: Mapping[str, Any], ckpt: str | None, candidates: Sequence[Candidate], lr_scale: float = 1.0
) -> Path:
    """Write one ``oracle/<name>.yaml`` per candidate (and the control); return the search-path folder.

    ``ckpt`` None = from scratch (the base architecture plus the edit, from initialisation). ``lr_scale``
    multiplies the base run's ``module.optimizer.lr`` for every job alike (see ``harness-oracle --lr-scale``).
    """
    folder = out / "conf" / GROUP
    folder.mkdir(parents=True, exist_ok=True)
    model_cfg, data_cfg = base_config["model"], base_config["data"]
    for cand in [Candidate(CONTROL, CONTROL), *candidates]:
        model = continued_model(model_cfg, ckpt, cand) if ckpt else scratch_model(model_cfg, cand)
        data = {"_target_": SHARED_DATA, "target": data_cfg["_target_"], **{k: v for k, v in data_cfg.items()
                                                                              if k != "_target_"}}  # fmt: skip
        fixed = {"variant": cand.name, "model": model, "data": data}
        if base_config.get("module"):
            fixed["module"] = scaled_lr(base_config["module"], lr_scale)
        body = OmegaConf.to_yaml(OmegaConf.create(fixed))
        (folder / f"{cand.name}.yaml").write_text(f"# @package _global_\n# oracle candidate {cand.name}\n{body}")
    return folder.parent


def scaled_lr(module: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """The module config with ``optimizer.lr`` times ``scale`` (unchanged when it has no numeric lr)."""
    out = dict(module)
    opt = out.get("optimizer")
    if scale != 1.0 and isinstance(opt, Mapping) and isinstance(opt.get("lr"), int | float):
        out["optimizer"] = {**opt, "lr": float(opt["lr"]) * scale}
    return out


def command(out: Path, names: Sequence[str], seeds: Sequence[int], steps: int, extra: Sequence[str] = ()) -> list[str]:
    """The harness-train multirun command line (joblib unless ``extra`` picks another launcher)."""
    launcher = [] if any(o.startswith("hydra/launcher=") for o in extra) else ["hydra/launcher=joblib"]
    logger = [] if any(o.startswith("logger=") for o in extra) else ["logger=none"]
    return [
        sys.executable, "-m", "harness.train", "--multirun",
        f"hydra.searchpath=[file://{(out / 'conf').resolve()}]",
        f"hydra.sweep.dir={(out / JOBS_DIR).resolve()}",
        f"+{GROUP}={','.join([CONTROL, *names])}",
        f"seed={','.join(map(str, seeds))}",
        f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
        *JOB_OVERRIDES, *launcher, *logger, *extra,
    ]  # fmt: skip


def run_jobs(cmd: Sequence[str], log_path: Path) -> int:
    """Run the multirun, its output to ``log_path``; the exit code (failed jobs still leave their records)."""
    with open(log_path, "w") as log:
        return subprocess.run(list(cmd), stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def read_jobs(out: Path) -> tuple[list[JobResult], list[str]]:
    """(finished jobs, notes on the others) from every record.json under ``<out>/jobs``."""
    results, notes = [], []
    for path in sorted((out / JOBS_DIR).rglob(RECORD_NAME)):
        try:
            record = load_record(path)
        except (OSError, ValueError) as err:
            notes.append(f"unreadable {path}: {err}")
            continue
        metrics, name = record.get("metrics") or {}, str(record.get("variant"))
        loss, acc = metrics.get(keys.VAL_LOSS), metrics.get(keys.VAL_ACC)
        if record.get("status") != "finished" or loss is None or acc is None:
            notes.append(f"job {path.parent.name} ({name}, seed {record.get('seed')}) did not finish: "
                         f"{record.get('error') or record.get('status')}")  # fmt: skip
            continue
        results.append(JobResult(name, int(record["seed"]), float(loss), float(acc)))
    if not results:
        raise ConfigError(f"no finished job record under {out / JOBS_DIR} (see {out / 'jobs.log'})")
    return results, notes
