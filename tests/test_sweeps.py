"""Sweeps: experiment recipes, the joblib / submitit / Optuna plugins, and a failing job in a sweep.

The launcher tests really launch: joblib runs 2 jobs in worker processes, submitit_local spawns
processes through submitit's local executor. Each job is a one-batch `debug=fdr` run: what is under
test is the launching, not the training.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.models import InceptionV1
from harness.run.recipes import draw_random_tweak
from harness.run.records import RunRecord
from harness.train import build_model

SMALL = ["data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=16", "logger=none",
         "probes=none"]


def _sweep(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.train", "-m", *args, *SMALL, f"paths.log_dir={tmp_path}",
           f"hydra.sweep.dir={tmp_path}/sweep"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _records(tmp_path: Path) -> list[dict]:
    paths = sorted((tmp_path / "sweep").glob("*/record.json"), key=lambda p: int(p.parent.name))
    return [RunRecord.load(p) for p in paths]


@pytest.mark.slow  # covered by test_optuna_storage (2 launches x 2 joblib workers) and the oracle's tier-1 test
def test_joblib_launcher_runs_two_jobs_in_parallel_workers(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "debug=fdr",
                  "+model.widen.mixed3b_5x5=0,4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stderr + proc.stdout
    records = _records(tmp_path)
    assert [r["status"] for r in records] == ["finished", "finished"]
    assert [r["variant"] for r in records] == ["base", "model.widen.mixed3b_5x5=4"]


def test_submitit_local_launcher_spawns_jobs(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "hydra/launcher=submitit_local", "debug=fdr", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(tmp_path)
    assert [(r["status"], r["seed"]) for r in records] == [("finished", 0), ("finished", 1)]
    # submitit's own bookkeeping: one folder per spawned job, with its logs
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 2


def test_a_failing_job_does_not_stop_the_others(tmp_path: Path) -> None:
    # job 0 fails while building its model (width -1), job 1 must still train; Hydra reports the
    # failure once every job of the sweep has run, with a non-zero exit.
    proc = _sweep(tmp_path, "debug=fdr", "model.width=-1,0.25")
    assert proc.returncode != 0
    failed, ok = _records(tmp_path)
    assert failed["status"] == "failed" and "model.width" in failed["error"]
    assert ok["status"] == "finished" and ok["epochs"]


@pytest.mark.slow  # covered by test_optuna_storage: each trial's value is its record's val/acc, best reported
def test_optuna_sweeper_optimises_the_returned_metric(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                  "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "test=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(tmp_path)
    assert len(records) == 2 and all(r["status"] == "finished" for r in records)
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = max(r["metrics"]["val/acc"] for r in records)
    assert result["best_value"] == pytest.approx(best)
    lrs = {r["config"]["module"]["optimizer"]["lr"] for r in records}
    assert len(lrs) == 2 and all(0.0005 <= lr <= 0.02 for lr in lrs)


@pytest.mark.parametrize("recipe", ["curve_widen", "random_tweak", "width_scan"])
def test_recipes_declare_their_sweep_and_group(make_cfg, recipe: str) -> None:
    cfg = make_cfg(f"experiment={recipe}")
    params = cfg.hydra.sweeper.params
    assert params["seed"] == "0,1,2" and len(params) == 2
    assert recipe.split("_")[0] in " ".join(cfg.tags) and cfg.variant


def test_curve_widen_recipe_widens_the_named_branch(make_cfg) -> None:
    from harness.run.recipes import expand_recipes

    cfg = make_cfg("experiment=curve_widen", "curve_widen.channels=16", "curve_widen.branch=mixed4a_5x5")
    assert cfg.variant == "mixed4a_5x5+16"
    expand_recipes(cfg)
    net = build_model(cfg, num_classes=8, image_size=64)
    base = make_cfg("experiment=curve_widen")
    expand_recipes(base)
    assert net.channels["mixed4a_5x5"] == build_model(base, 8, 64).channels["mixed4a_5x5"] + 16


def test_random_tweak_spends_the_same_budget_on_a_random_edit(make_cfg) -> None:
    cfg = make_cfg("experiment=random_tweak")
    spec = {"budget_branch": "mixed3b_5x5", "channels": 16, "inserts": True}
    draws = [draw_random_tweak(cfg.model, {**spec, "draw": d}) for d in range(6)]
    assert draws[0] == draw_random_tweak(cfg.model, {**spec, "draw": 0})  # reproducible per draw
    assert len({(d["kind"], d["target"]) for d in draws}) > 1  # and actually random across draws
    arch = {k: cfg.model[k] for k in ("width", "batch_norm", "lrn", "last_layer")}
    def params(**edits) -> int:  # counted by hand, not by the pricing under test
        return sum(p.numel() for p in InceptionV1(num_classes=10, **arch, **edits).parameters())

    budget = params(widen={"mixed3b_5x5": 16}) - params()
    for d in draws:
        assert d["budget_params"] == budget
        assert abs(d["params_added"] - budget) <= 0.5 * budget + 1  # widen: closest n; insert: 0.5x-2x
        assert d["kind"] in ("widen", "insert")
    # zero budget = the base architecture, the control's own baseline
    assert draw_random_tweak(cfg.model, {**spec, "channels": 0})["kind"] == "none"


def test_random_tweak_run_records_the_drawn_edit(make_cfg) -> None:
    from harness.train import train

    cfg = make_cfg("experiment=random_tweak", "random_tweak.channels=8", "debug=fdr")
    _, objects = train(cfg)
    record = objects["record"].data
    drawn = record["random_tweak"]
    assert record["variant"] == "random_tweak+8"
    if drawn["kind"] == "widen":
        assert record["config"]["model"]["widen"][drawn["target"]] == drawn["channels"]
    else:
        assert drawn["target"] in record["config"]["model"]["insert"]
    assert record["model"]["params/total"] > 0 and record["status"] == "finished"
