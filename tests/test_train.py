"""End-to-end training through `train(cfg)` and through the `harness-train` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run.records import RunRecord
from harness.run.wandb_offline import read_offline_run
from harness.train import train


def test_fast_dev_run_writes_record(make_cfg) -> None:
    cfg = make_cfg("debug=fdr")
    metrics, objects = train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    assert record["status"] == "finished"
    assert record["variant"] == "base"  # a debug preset is a budget, not a variant (harness.run.variant.BUDGET)
    assert record["config"]["model"]["width"] == 0.25
    assert record["model"]["params/total"] == sum(p.numel() for p in objects["module"].net.parameters())
    assert "test/acc" in record["test"] and 0.0 <= record["test"]["test/acc"] <= 1.0
    assert "train/loss" in metrics


def test_wandb_offline_run_holds_logged_keys(make_cfg) -> None:
    cfg = make_cfg("+model.widen.mixed3b_5x5=8", "trainer.max_epochs=2", "seed=3", "tags=[unit]",
                   "logger.wandb.log_model=true")
    metrics, objects = train(cfg)
    run_dir = Path(cfg.paths.output_dir)

    run = read_offline_run(run_dir)  # the offline files live inside the run directory
    classes = objects["datamodule"].classes
    expected = {"train/loss", "val/loss", "val/acc", "val/acc_best", "test/acc", "model/params/total",
                "model/params/trainable", "model/channels/mixed3b_5x5", "perf/train_images_per_s"}
    expected |= {f"val/acc/{c}" for c in classes} | {f"test/acc/{c}" for c in classes}
    assert expected <= run.keys(), expected - run.keys()
    assert "model.widen.mixed3b_5x5=8" in run.group.split(",") and "seed" not in run.group  # the variant
    assert run.name == f"{run.group}-s3" and run.job_type == "train"  # a single run: the group is its variant
    assert run.tags == ["unit"] and run.config["variant"] == run.group
    assert run.config["seed"] == 3 and run.config["model"]["widen"] == {"mixed3b_5x5": 8}
    base_5x5 = 24  # 96 * 0.25
    assert run.summary["model/channels/mixed3b_5x5"] == base_5x5 + 8
    assert not any(k.startswith("model/") for row in run.history for k in row)  # constants: summary, not charts
    assert run.summary["test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.exit_code == 0

    # axes: training metrics on trainer/global_step, which never goes back (test/* comes at the best
    # checkpoint's step); val/acc summarised as its max, and val/acc_best logged
    for name in ("train/*", "val/*", "test/*", "val/acc"):
        assert run.metrics[name]["step_metric"] == "trainer/global_step", name
    assert run.metrics["val/acc"]["summary"] == ["max"]
    steps = [row["trainer/global_step"] for row in run.history if "trainer/global_step" in row]
    assert steps == sorted(steps) and len(steps) > 2
    assert [row["train/loss"] for row in run.history if "train/loss" in row]  # the epoch mean, not `_epoch`
    val_acc = [row["val/acc"] for row in run.history if "val/acc" in row]
    assert len(val_acc) == 2 and run.summary["val/acc"] == {"max": max(val_acc)}
    assert run.summary["val/acc_best"] == max(val_acc)
    # log_model=true: the checkpoints as a model artifact, uploaded at the end of training
    (model,) = [files for name, files in run.artifacts.items() if name == f"model-{run.run_id}"]
    assert any(path.endswith(".ckpt") for path in model)

    record = RunRecord.load(run_dir)
    assert [row["epoch"] for row in record["epochs"]] == [0, 1]
    assert all("val/acc" in row and "train/loss" in row for row in record["epochs"])
    assert record["test"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert record["wandb"]["mode"] == "offline" and record["wandb"]["group"] == run.group
    assert Path(record["checkpoints"]["last"]).is_file()


def test_failed_run_keeps_its_record(make_cfg, monkeypatch) -> None:
    cfg = make_cfg("debug=fdr")

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("pytorch_lightning.Trainer.fit", boom)
    with pytest.raises(RuntimeError):
        train(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "record.json").read_text())
    assert record["status"] == "failed" and "disk on fire" in record["error"]
    assert record["config"]["seed"] == 0


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    small = ["data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=16"]
    where = [f"paths.log_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run"]
    cmd = [sys.executable, "-m", "harness.train", *args, *small, *where]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_sweep_two_jobs(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "-m", "debug=fdr", "+model.widen.mixed3b_5x5=0,8", f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [RunRecord.load(p) for p in sorted((tmp_path / "sweep").glob("*/record.json"))]
    assert [r["status"] for r in records] == ["finished", "finished"]
    assert [r["model"]["channels"]["mixed3b_5x5"] for r in records] == [24, 32]
    # widen=0 is the base architecture; settings every job shares (debug=fdr, data sizes) name no variant
    assert [r["variant"] for r in records] == ["base", "model.widen.mixed3b_5x5=8"]
    assert all(r["seed"] == 0 for r in records)
