"""Statistics and bookkeeping of the grow loop without training: paired verdicts, nested round records,
rule weights calibrated from an oracle's signals.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from harness.compare.load import Run, find_records
from harness.compare.paired import paired_effects
from harness.compare.stats import welch_p
from harness.facts.errors import ConfigError
from harness.suggest.calibrate import weights_from_signals
from harness.suggest.config import load_with_weights
from tests.helpers import write_record


def _runs(values: dict[str, list[float]], seeds: list[int] | None = None) -> list[Run]:
    return [Run(Path(f"/r/{v}/{i}"), "finished", v, (seeds or list(range(len(xs))))[i], {"test/acc": x})
            for v, xs in values.items() for i, x in enumerate(xs)]  # fmt: skip


def test_paired_interval_sees_a_shift_that_seed_noise_hides_from_welch() -> None:
    rng = np.random.default_rng(0)
    shared = rng.normal(0.7, 0.05, 8)  # the seed's base model: common to both arms
    base, grown = shared + rng.normal(0, 0.002, 8), shared + 0.01 + rng.normal(0, 0.002, 8)
    (effect,) = paired_effects(_runs({"random": list(base), "suggest": list(grown)}), "random", ("test/acc",))
    assert effect.n_pairs == 8 and effect.low > 0 and effect.mean_diff == pytest.approx(np.mean(grown - base))
    assert welch_p(list(base), list(grown)) > 0.05  # unpaired: lost in the seed noise
    # negative control: no shift -> the paired interval contains 0
    same = shared + rng.normal(0, 0.002, 8)
    (null,) = paired_effects(_runs({"random": list(base), "none": list(same)}), "random", ("test/acc",))
    assert null.low < 0 < null.high


def test_pairing_needs_unique_shared_seeds() -> None:
    assert paired_effects(_runs({"random": [0.5, 0.6], "x": [0.5, 0.7]}, seeds=[0, 0]), "random") == []
    assert paired_effects(_runs({"random": [0.5], "x": [0.6]}), "random") == []


def test_round_records_inside_a_chain_are_not_runs(tmp_path: Path) -> None:
    for job in ("0", "1"):
        (tmp_path / job / "rounds" / "round0").mkdir(parents=True)
        (tmp_path / job / "record.json").write_text("{}")
        (tmp_path / job / "rounds" / "round0" / "record.json").write_text("{}")
    (tmp_path / "2" / "deep").mkdir(parents=True)  # a lone record deeper down is still a run
    (tmp_path / "2" / "deep" / "record.json").write_text("{}")
    found = find_records([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["0/record.json", "1/record.json",
                                                                   "2/deep/record.json"]  # fmt: skip
    assert find_records([tmp_path / "0" / "rounds"]) == [tmp_path / "0" / "rounds" / "round0" / "record.json"]


def _signals(path: Path, rows: dict[str, str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["signal", "spearman", "spearman_low", "spearman_high", "top1", "top3", "regret"])
        for name, rho in rows.items():
            writer.writerow([name, rho, "", "", 0, 0, 0])
    return path


def test_weights_from_signals_csv(tmp_path: Path) -> None:
    path = _signals(tmp_path / "signals.csv", {"curve_cluster": "0.8", "prune_dead": "-0.5", "class_weakness": "nan",
                                                "gradmax": "0.9", "random": "0.1"})  # fmt: skip
    weights, notes = weights_from_signals(path)
    assert weights == {"curve_cluster": 0.8, "prune_dead": 0.0}  # only rules; anti-predictive -> 0
    assert any(n.startswith("class_weakness: rho undefined") for n in notes)
    assert any(n.startswith("lineage: not scored") for n in notes)
    cfg = load_with_weights(path)
    assert cfg.weights.curve_cluster == 0.8 and cfg.weights.class_weakness == 1.0  # unscored keep the default


def test_calibrated_weights_change_the_ranking(tmp_path: Path) -> None:
    from harness.facts.overrides import channels
    from harness.suggest.load import RunSummary
    from harness.suggest.rules import suggest

    model = {"_target_": "harness.models.InceptionV1", "width": 0.25, "last_layer": "mixed4b", "widen": {},
             "insert": []}  # fmt: skip
    metrics = {"curves/mixed4a/detectors": 6, "curves/mixed4a/detectors_random_init": 0,
               "curves/mixed4a_3x3/detectors": 6, "curves/mixed4a/orientation_coverage": 0.9,
               "linear/mixed3a/class_acc": 0.2, "linear/mixed3b/class_acc": 0.9}  # fmt: skip
    run = RunSummary("planted", "base", [0], metrics, model=model, channels=channels(model), classes=["arc_r4", "line"])
    default, _ = suggest(run, load_with_weights(None))
    assert default[0].rules == ["insert_at_jump"]  # jump 0.7 beats the cluster's 0.55 at equal weights
    path = _signals(tmp_path / "signals.csv", {"curve_cluster": "0.9", "insert_at_jump": "0.1"})
    calibrated, _ = suggest(run, load_with_weights(path))
    assert calibrated[0].rules == ["curve_cluster"] and calibrated[0].edit.target == "mixed4a_3x3"


def test_bad_weights_file_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="not a signals.csv"):
        weights_from_signals(tmp_path / "x.csv") if (tmp_path / "x.csv").write_text("a,b\n1,2\n") else None
    (tmp_path / "w.yaml").write_text("curve_clusterr: 2\n")
    with pytest.raises(ConfigError, match="unknown rule.*valid: curve_cluster"):
        weights_from_signals(tmp_path / "w.yaml")
    from harness.suggest.cli import main

    write_record(tmp_path, "run")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "run"), "--weights", str(tmp_path / "missing.csv")])
    assert exit_info.value.code == 2 and "no such file" in capsys.readouterr().err
