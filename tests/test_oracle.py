"""harness-oracle / harness-signals: candidates, paired gains, signals and their scores, end to end at tiny sizes."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from harness.facts.errors import ConfigError
from harness.oracle.candidates import TOLERANCE, Candidate, check_preserving, enumerate_candidates
from harness.oracle.cli import base_run
from harness.oracle.data import check_images
from harness.oracle.gains import paired_diffs, t_interval
from harness.oracle.launch import JobResult
from harness.oracle.report import CANDIDATE_COLUMNS
from harness.oracle.scoring import SIGNALS_COLUMNS, regret, score_signal, spearman, top_k
from harness.oracle.signals import ablation_signal, probe_signal, random_signal, rule_signal
from harness.suggest.config import load_config
from harness.suggest.load import RunSummary
from tests.conftest import CONF_DIR, TINY


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained base run (one epoch, no probes, no logger)."""
    from harness.train import train

    run = tmp_path_factory.mktemp("oracle") / "base"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[*TINY, "probes=none", "logger=none"])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(run)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    train(cfg)
    GlobalHydra.instance().clear()
    return run


# --- candidates ---------------------------------------------------------------------------------------------


def test_candidates_cost_about_the_budget_and_preserve_the_function(base: Path, one_thread) -> None:
    record, ckpt = base_run(base)
    model, n = record["config"]["model"], len(record["classes"])
    candidates, budget = enumerate_candidates(model, n)
    assert budget == round(0.1 * record["model"]["params/total"])
    assert len(candidates) == 27 and all(c.kind == "widen" for c in candidates)  # 3 stem + 4 blocks x 6 branches
    for cand in candidates:  # rounding to whole units: within half a unit's cost, a few percent here
        assert abs(cand.params_added - budget) <= 0.05 * budget, cand
    from harness.models.build import load_net

    net, _ = load_net(ckpt)
    images = check_images(record["config"]["data"], 16)
    pick = [c for c in candidates if c.name in ("conv2d0", "mixed3b_5x5", "mixed4b_pool_reduce")]
    pruned = Candidate("prune", "widen", "mixed3b_5x5", -4)  # negative control: pruning changes the function
    kept, refused = check_preserving(net, model, ckpt, [*pick, pruned], images)
    assert [c.name for c in kept] == [c.name for c in pick]
    assert all(c.max_change is not None and c.max_change <= TOLERANCE for c in kept)
    assert [c.name for c in refused] == ["prune"] and refused[0].max_change > 1e-3


def test_inserts_only_from_scratch_and_within_the_cost_range(base: Path) -> None:
    record, _ = base_run(base)
    model, n = record["config"]["model"], len(record["classes"])
    with_inserts, budget = enumerate_candidates(model, n, inserts=True)
    inserts = [c for c in with_inserts if c.kind == "insert"]
    assert inserts and all(0.5 * budget <= c.params_added <= 2 * budget for c in inserts)
    assert inserts[0].override == f"model.insert=[{inserts[0].target}]"
    with pytest.raises(ConfigError, match="only --from-scratch"):
        enumerate_candidates(model, n, only=["insert_mixed3a"])
    with pytest.raises(ConfigError, match="valid: conv2d0"):
        enumerate_candidates(model, n, only=["mixed9z_1x1"])


# --- gains and scoring on a planted oracle ------------------------------------------------------------------


def test_paired_gains_and_t_interval_by_hand() -> None:
    jobs = [JobResult("control", s, 1.0 + s, 0.5) for s in range(3)]
    jobs += [JobResult("a", s, 1.0 + s - d, 0.6) for s, d in enumerate([1.0, 2.0, 3.0])]
    diffs = paired_diffs(jobs)
    assert diffs["a"]["val_loss"].tolist() == [1.0, 2.0, 3.0]
    assert np.allclose(diffs["a"]["val_acc"], 0.1)
    g = t_interval([1.0, 2.0, 3.0])
    assert g.mean == 2.0 and g.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(t_interval([1.0]).low)


def _planted(n: int = 10, seeds: int = 3) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    rng = np.random.default_rng(0)
    gains = {f"c{i}": float(i) for i in range(n)}
    return {c: g + 0.01 * rng.standard_normal(seeds) for c, g in gains.items()}, gains


def test_scoring_a_planted_oracle() -> None:
    diffs, gains = _planted()
    same = score_signal("same", gains, diffs, reps=300)
    assert same.spearman == pytest.approx(1.0) and same.spearman_low > 0.9
    assert (same.top1, same.top3, same.regret) == (1.0, 1.0, 0.0)
    reversed_ = score_signal("reversed", {c: -g for c, g in gains.items()}, diffs, reps=300)
    assert reversed_.spearman == pytest.approx(-1.0) and reversed_.spearman_high < -0.9
    assert reversed_.top1 == 0.0 and reversed_.regret == pytest.approx(9.0, abs=0.05)
    order = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]  # a fixed shuffle with little rank correlation
    shuffled = score_signal("shuffled", {f"c{i}": float(order[i]) for i in range(10)}, diffs, reps=300)
    assert abs(shuffled.spearman) < 0.3 and shuffled.spearman_low < 0 < shuffled.spearman_high


def test_top_k_and_regret_by_hand_with_ties() -> None:
    gains = np.array([0.1, 0.5, 0.3, 0.2])
    scores = np.array([3.0, 1.0, 2.0, 0.0])  # picks c0, c2, c1: the best (c1) is third
    assert (top_k(scores, gains, 1), top_k(scores, gains, 3), regret(scores, gains)) == (0.0, 1.0, 0.4)
    tied = np.array([1.0, 1.0, 0.0, 0.0])  # first choice is c0 or c1, each half the time
    assert top_k(tied, gains, 1) == 0.5 and regret(tied, gains) == pytest.approx(0.2)
    flat = np.zeros(4)  # a constant signal scores what random guessing scores; rho is undefined
    assert top_k(flat, gains, 1) == 0.25 and top_k(flat, gains, 3) == 0.75
    assert math.isnan(spearman(flat, gains))
    diffs = {f"c{i}": np.array([g]) for i, g in enumerate(gains)}
    row = score_signal("flat", {f"c{i}": 0.0 for i in range(4)}, diffs, reps=50)
    assert math.isnan(row.spearman) and math.isnan(row.spearman_low) and row.top1 == 0.25


# --- signals ------------------------------------------------------------------------------------------------

WIDE = [Candidate("mixed3b_5x5", "widen", "mixed3b_5x5", 8), Candidate("conv2d1", "widen", "conv2d1", 4)]
INS = [Candidate("insert_mixed3a", "insert", "mixed3a", 1)]


def test_growth_probe_signals_are_read_by_key() -> None:
    metrics = {"gradmax/mixed3b_5x5/score": 2.0, "gradmax/conv2d1/score": 1.0, "sensli/mixed3a/score": 0.3,
               "effective_rank/mixed3b_5x5/fraction": 0.9, "effective_rank/conv2d1/fraction": 0.2,
               "effective_rank/conv2d1/ratio_to_init": 1.5}  # fmt: skip
    assert probe_signal(metrics, "gradmax", WIDE + INS) == {"mixed3b_5x5": 2.0, "conv2d1": 1.0}
    assert probe_signal(metrics, "effective_rank", WIDE) == {"mixed3b_5x5": 0.9, "conv2d1": 1.5}  # ratio first
    assert probe_signal(metrics, "sensli", WIDE + INS) == {"insert_mixed3a": 0.3}
    assert probe_signal({}, "gradmax", WIDE) == {}  # probe absent: no signal, not zeros


def test_rules_score_their_target_and_are_zero_where_silent() -> None:
    channels = {"conv2d1": 16, "mixed3b_5x5": 24, "mixed3b_1x1": 32}
    run = RunSummary("x", "base", [0], {"activations/conv2d1/dead_fraction": 0.5,
                                        "activations/mixed3b_5x5/dead_fraction": 0.0}, channels=channels)  # fmt: skip
    scores = rule_signal("prune_dead", run, load_config(), WIDE)
    assert scores == {"conv2d1": -0.5, "mixed3b_5x5": 0.0}  # "not here"
    assert rule_signal("curve_cluster", run, load_config(), WIDE) is None  # its probe did not run: absent


def test_ablation_and_random_signals() -> None:
    metrics = {"ablation/mixed3b/curve_detectors/delta_loss": 0.4, "ablation/mixed3b/curve_detectors/size": 4,
               "ablation/mixed3b/random_curve_detectors/delta_loss": 9.0}  # fmt: skip
    assert ablation_signal(metrics, WIDE) == {"mixed3b_5x5": pytest.approx(0.1), "conv2d1": 0.0}
    assert ablation_signal({}, WIDE) is None
    a, b = random_signal(WIDE, seed=0), random_signal(WIDE[:1], seed=0)
    assert a["mixed3b_5x5"] == b["mixed3b_5x5"] != random_signal(WIDE, seed=1)["mixed3b_5x5"]


# --- end to end ---------------------------------------------------------------------------------------------


def test_oracle_end_to_end_two_candidates_one_seed(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "oracle"
    cmd = [sys.executable, "-m", "harness.oracle", str(base), "--out", str(out), "--candidates",
           "mixed3b_5x5,conv2d1", "--tier", "1", "--seeds", "1", "--steps", "3", "--bootstrap", "50",
           "hydra.launcher.n_jobs=2"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "candidates.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["candidate"] for r in rows} == {"mixed3b_5x5", "conv2d1"}
    assert list(rows[0])[: len(CANDIDATE_COLUMNS)] == list(CANDIDATE_COLUMNS)
    assert "score_random" in rows[0] and float(rows[0]["max_logit_change"]) <= TOLERANCE
    assert rows[0]["gain_val_loss_low"] == "nan"  # one seed: no interval
    with open(out / "signals.csv") as fh:
        signals = list(csv.DictReader(fh))
    assert list(signals[0])[: len(SIGNALS_COLUMNS) - 1] == list(SIGNALS_COLUMNS[:-1])
    assert "random" in {s["signal"] for s in signals}
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "http" not in page.replace("http-equiv", "")
    meta = json.loads((out / "oracle.json").read_text())
    assert len(meta["candidates"]) == 2 and meta["lr_scale"] == 0.1
    # every job (control and candidates alike) fine-tuned at 0.1x the base run's learning rate
    base_lr = json.loads((base / "record.json").read_text())["config"]["module"]["optimizer"]["lr"]
    job_lrs = {
        json.loads(p.read_text())["config"]["module"]["optimizer"]["lr"] for p in (out / "jobs").rglob("record.json")
    }
    assert len(job_lrs) == 1 and job_lrs.pop() == pytest.approx(0.1 * base_lr)
    # harness-signals re-scores the same oracle into another folder, reading a (planted) growth-probe run there
    again = tmp_path / "rescored"
    gains = {r["candidate"]: float(r["gain_val_loss"]) for r in rows}
    planted = {f"gradmax/{c}/score": g for c, g in gains.items()}  # gradmax == the oracle: its first pick is best
    planted |= {f"effective_rank/{c}/fraction": -g for c, g in gains.items()}  # reversed: its first pick is worst
    (again / "probe_run").mkdir(parents=True)
    (again / "probe_run" / "record.json").write_text(json.dumps({"status": "finished", "metrics": planted}))
    done = subprocess.run([sys.executable, "-c", "from harness.oracle.cli import signals_main; signals_main()",
                           str(base), str(out), "--out", str(again), "--bootstrap", "50"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with open(again / "signals.csv") as fh:
        rescored = {r["signal"]: r for r in csv.DictReader(fh)}
    assert rescored["gradmax"]["top1"] == "1" and rescored["gradmax"]["regret"] == "0"
    assert rescored["effective_rank"]["top1"] == "0" and float(rescored["effective_rank"]["regret"]) > 0
    assert rescored["random"] == {s["signal"]: s for s in signals}["random"]  # same seed, same control


@pytest.mark.parametrize(
    "args, expected",
    [(["/nonexistent/run"], "not a harness-train run directory"),
     (["BASE", "--candidates", "nope"], "unknown candidate(s) nope"),
     (["BASE", "--tier", "1", "--seeds", "0"], "--seeds must be >= 1"),
     (["BASE", "--tier", "1", "--lr-scale", "0"], "--lr-scale must be > 0"),
     (["BASE", "--tier", "2"], "--tier must be 0"),
     (["BASE", "--amplitude", "train"], "--amplitude must be one of same, held_out"),
     (["BASE", "--tier", "1", "--top", "0"], "--top must be >= 1"),
     (["BASE", "--top", "3"], "use it with --tier 1"),
     (["BASE", "--tier", "1", "--top", "3", "--top-by", "gradmax"], "--top-by must be one of tier0, tiny"),
     (["BASE", "--tier", "1", "--top-by", "tiny"], "give --top K with it"),
     (["BASE", "--set-a", "300", "--candidates", "conv2d1"], "exceed the training split")],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(base: Path, args: list[str], expected: str, capsys) -> None:
    from harness.oracle.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([str(base) if a == "BASE" else a for a in args])
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], lines


def test_an_out_dir_with_jobs_is_refused(base: Path, tmp_path: Path, capsys) -> None:
    from harness.oracle.cli import main

    (tmp_path / "jobs" / "0").mkdir(parents=True)
    with pytest.raises(SystemExit):
        main([str(base), "--out", str(tmp_path), "--candidates", "conv2d1", "--seeds", "1", "--tier", "1"])
    assert "already holds an oracle run" in capsys.readouterr().err


def test_check_images_are_the_runs_validation_images(base: Path) -> None:
    record, _ = base_run(base)
    images = check_images(record["config"]["data"], 8)
    assert images.shape == (8, 3, 64, 64) and torch.isfinite(images).all()


def test_scaled_lr_scales_only_a_numeric_optimizer_lr() -> None:
    from harness.oracle.launch import scaled_lr

    module = {"optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.004}, "channels_last": True}
    assert scaled_lr(module, 0.1)["optimizer"]["lr"] == pytest.approx(0.0004) and module["optimizer"]["lr"] == 0.004
    assert scaled_lr(module, 1.0) == module
    assert scaled_lr({"optimizer": {"lr": "${oc.env:LR}"}}, 0.1) == {"optimizer": {"lr": "${oc.env:LR}"}}


# --- tier 0 -------------------------------------------------------------------------------------------------


def test_tier0_bootstrap_is_paired_and_resolves_a_planted_effect() -> None:
    from harness.oracle.tier0 import bootstrap_indices, interval, winner_resolved

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 400)
    idx = bootstrap_indices(400, reps=500)
    mean, low, high = interval(noise + 0.5, idx)  # planted: +0.5 on every image
    assert low > 0.3 and high < 0.7 and mean == pytest.approx(0.5 + noise.mean())
    _, low, high = interval(noise, idx)  # negative control: no effect, the interval covers 0
    assert low < 0 < high
    # winner vs runner-up on the same images: a shared per-image component cancels (pairing), so +0.05 resolves
    shared = rng.normal(0, 5, 400)
    first, second, (d, lo, hi) = winner_resolved({"a": shared + 0.05, "b": shared, "c": shared - 1})
    assert (first, second) == ("a", "b") and d == pytest.approx(0.05) and lo > 0
    assert np.array_equal(idx, bootstrap_indices(400, reps=500))  # the same draws for every candidate


def test_top_by_ranks_the_shortlist_by_tier0_or_a_first_order_signal() -> None:
    from harness.oracle.cli import shortlist

    rows = [{"candidate": c, "gain_train_loss": g} for c, g in [("a", 0.3), ("b", 0.2), ("c", 0.1), ("d", 0.0)]]
    first_order = {"tiny": {"a": 0.0, "b": 1.0, "c": float("nan"), "d": 2.0}, "gradmax_per_unit": {}}
    first = (rows, {}, [], [], first_order)
    assert shortlist(first, 2, "tier0") == ["a", "b"]  # tier 0's gain order
    assert shortlist(first, 2, "tiny") == ["d", "b"]  # planted: the signal's order, not tier 0's
    assert shortlist(first, 9, "tiny") == ["d", "b", "a"]  # a nan score is never shortlisted
    assert shortlist(first, 2, "gradmax_per_unit") == []  # a signal that scored nothing shortlists nothing


def test_tier0_reliability_is_high_for_a_planted_spread_and_near_zero_without_one() -> None:
    from harness.oracle.tier0 import reliability

    def world(seed: int, spread: float) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        shared = rng.normal(0, 1, 512)  # per-image component every candidate shares (the pairing)
        return {f"c{i}": shared + spread * rng.normal() + rng.normal(0, 0.3, 512) for i in range(20)}

    # planted: the candidates' true gains differ by 10x the noise of a mean over 256 images -> the order replicates
    assert reliability(world(0, 0.2), splits=50) > 0.95
    # negative control: no true spread -> B's halves rank the candidates independently, r scatters around 0
    nulls = [reliability(world(s, 0.0), splits=50) for s in range(12)]
    assert abs(np.mean(nulls)) < 0.2 and min(nulls) < 0.3
    # between: true spread about the noise of a mean over the 512 images (0.3 / sqrt(512) = 0.013) -> r near 0.5
    assert 0.2 < np.mean([reliability(world(s, 0.013), splits=50) for s in range(6)]) < 0.8
    assert np.isnan(reliability({"a": np.ones(10), "b": np.zeros(10)}))  # < 3 candidates: nothing to rank
    assert np.isnan(reliability({k: np.zeros(10) for k in "abc"}))  # every gain equal: no order to replicate


def test_tier0_sets_are_disjoint_training_images_and_bad_sizes_are_one_line(base: Path) -> None:
    from harness.oracle.tier0 import fixed_sets, halves

    record, _ = base_run(base)
    sets = fixed_sets(record["config"]["data"], 40, 60)
    a = torch.cat([x for x, _ in sets.a])
    assert len(a) == 40 and len(sets.b_images) == 60 and len(sets.b_labels) == 60
    directions, amplitude = halves(sets.a)  # --amplitude held_out: A's two halves, in order
    assert torch.equal(torch.cat([x for x, _ in directions + amplitude]), a)
    assert sum(len(y) for _, y in directions) == sum(len(y) for _, y in amplitude) == 20
    seen = {hash(img.numpy().tobytes()) for img in a}
    assert not seen & {hash(img.numpy().tobytes()) for img in sets.b_images}
    again = fixed_sets(record["config"]["data"], 40, 60)
    assert torch.equal(again.b_images, sets.b_images)  # fixed: the same images every time
    with pytest.raises(ConfigError, match=r"exceed the training split \(256 images\)"):
        fixed_sets(record["config"]["data"], 200, 100)


def test_tier0_end_to_end_three_candidates(base: Path, tmp_path: Path, one_thread) -> None:
    """Deterministic gains on set B with bootstrap CIs, TINY's loss on set A never worse (its line search keeps
    gamma = 0), no fine-tune jobs, signals scored against tier 0; a rerun gives the same numbers."""
    from harness.oracle.cli import main

    out = tmp_path / "t0"
    (out / "probe_run").mkdir(parents=True)  # planted growth probes: gradmax ranks conv2d1 > conv2d2 > mixed3b_5x5
    planted = {"gradmax/conv2d1/score": 3.0, "gradmax/conv2d2/score": 2.0, "gradmax/mixed3b_5x5/score": 1.0}
    (out / "probe_run" / "record.json").write_text(json.dumps({"status": "finished", "metrics": planted}))
    args = [str(base), "--out", str(out), "--candidates", "conv2d1,conv2d2,mixed3b_5x5", "--set-a", "48",
            "--set-b", "64", "--bootstrap", "50"]  # fmt: skip
    main(args)
    with open(out / "candidates.csv") as fh:
        rows = {r["candidate"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"conv2d1", "conv2d2", "mixed3b_5x5"} and not (out / "jobs").exists()
    for r in rows.values():
        assert r["gain_val_loss"] == "" and r["n_seeds"] == ""  # tier 1 did not run: its columns are empty
        assert float(r["gain_train_loss_low"]) <= float(r["gain_train_loss"]) <= float(r["gain_train_loss_high"])
        assert float(r["loss_change_a"]) <= 0
    with open(out / "signals.csv") as fh:
        signals = {s["signal"]: s for s in csv.DictReader(fh)}
    assert {s["tier"] for s in signals.values()} == {"0"} and signals["gradmax"]["n_candidates"] == "3"
    assert signals["tiny"]["n_candidates"] == signals["gradmax_per_unit"]["n_candidates"] == "3"  # on set A
    meta = json.loads((out / "oracle.json").read_text())
    assert meta["tier"] == 0 and meta["set_b"] == 64 and meta["amplitude"] in ("same", "held_out")
    assert math.isfinite(meta["reliability"]) and meta["reliability"] <= 1  # split-half r of 3 candidates
    page = (out / "report.html").read_text()
    assert "tier 0" in page and "Tied scores" in page and "split-half reliability" in page
    first = {k: r["gain_train_loss"] for k, r in rows.items()}
    main([*args, "--out", str(tmp_path / "again")])
    with open(tmp_path / "again" / "candidates.csv") as fh:
        assert {r["candidate"]: r["gain_train_loss"] for r in csv.DictReader(fh)} == first  # no seed noise
