"""The Optuna sweeper (harness/sweepers/optuna.py): Hydra's sweep grammar as Optuna distributions, and two
launches running trials in parallel (joblib workers) that share one study in one SQLite file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from harness.run.records import RunRecord
from harness.sweepers.optuna import split_overrides
from tests.helpers import TINY_JOB

optuna = pytest.importorskip("optuna", minversion="4.0", reason="the sweeper needs optuna >= 4 (pyproject pins it)")

SMALL = [*TINY_JOB, "test=false"]


def test_sweep_grammar_becomes_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    params = {"lr": "tag(log, interval(0.0005, 0.02))", "depth": "range(1, 10, 2)", "seed": "3"}
    space, fixed = split_overrides(["act=relu,gelu", "width=int(interval(2, 8))", "seed=4", "x=1.5"], params)
    assert space == {
        "lr": FloatDistribution(0.0005, 0.02, log=True),
        "depth": IntDistribution(1, 9, step=2),  # Hydra's range stops before 10, Optuna's high is inclusive
        "act": CategoricalDistribution(["relu", "gelu"]),
        "width": IntDistribution(2, 8),
    }
    assert fixed == ["seed=4", "x=1.5"]  # the command line wins over params; plain values are not searched
    with pytest.raises(ValueError, match="cannot search"):
        split_overrides(["a=glob(*)"], {})
    assert OverridesParser.create().parse_override("seed=4").is_sweep_override() is False  # the control


def _launch(tmp_path: Path, name: str, storage: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        "hparams_search=optuna",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
        *SMALL,
        f"paths.log_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/{name}",
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).parents[1]
    )


def test_two_launches_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    started = time.perf_counter()
    procs = [_launch(tmp_path, name, storage) for name in ("a", "b")]  # at once: both write the study
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    print(f"2 launches x 2 joblib workers, 4 trials: {time.perf_counter() - started:.1f} s")
    assert [p.returncode for p in procs] == [0, 0], [out[-3000:] for out in outputs]

    study = optuna.load_study(study_name="shared", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in complete) == [0, 1, 2, 3]  # one study, numbered across both launches
    runs = {Path(t.user_attrs["run_dir"]).parent.name for t in complete}
    assert runs == {"a", "b"}  # each launch ran two of them
    for trial in complete:  # each trial's value is what its run recorded
        record = RunRecord.load(trial.user_attrs["run_dir"])
        assert record["status"] == "finished"
        assert record["metrics"]["val/acc"] == pytest.approx(trial.value)
        assert record["config"]["module"]["optimizer"]["lr"] == pytest.approx(trial.params["module.optimizer.lr"])
    assert len({t.params["module.optimizer.lr"] for t in complete}) == 4
    for name in ("a", "b"):  # both launches report the shared study's best
        result = yaml.safe_load((tmp_path / name / "optimization_results.yaml").read_text())
        assert result["n_finished"] >= 2 and result["best_value"] <= study.best_value
    assert yaml.safe_load((tmp_path / "b" / "optimization_results.yaml").read_text())["best_value"] in {
        t.value for t in complete
    }


def test_a_failing_trial_is_failed_in_the_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.max_failure_rate=1.0",
        f"hydra.sweeper.storage={storage}",
        "model.width=-1",
        *SMALL,
        f"paths.log_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/s",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]  # within max_failure_rate: the search goes on
    (trial,) = optuna.load_study(study_name="harness_lr_wd", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.FAIL and "model.width" in trial.user_attrs["error"]
