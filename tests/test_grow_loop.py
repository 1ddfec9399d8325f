"""The grow loop (experiment=grow_loop): equal budgets and steps, function-preserving growth, pairing by seed,
the policies' choices on planted evidence, and a tiny end-to-end sweep read by harness-compare."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from harness.facts.errors import ConfigError
from harness.grow import policies
from harness.grow.loop import run_chain
from harness.grow.rounds import check_images, logit_change
from harness.models.pricing import count_params
from harness.oracle.candidates import TOLERANCE, Candidate
from harness.run.records import RunRecord
from harness.suggest.config import load_config
from harness.suggest.load import RunSummary
from harness.train import train
from tests.conftest import CONF_DIR

TINY = ["data.train_size=256", "data.val_size=64", "data.test_size=64", "data.batch_size=32",
        "trainer.accelerator=cpu", "probing.probe_set_size=64", "grow.base_steps=6", "grow.steps=4",
        "grow.rounds=1"]  # fmt: skip
BUDGET_TOLERANCE = 0.05  # whole units: within half a unit's cost of the budget (a few percent here)


def _chain(out: Path, policy: str, seed: int, *extra: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = ["experiment=grow_loop", *TINY, f"grow.policy={policy}", f"seed={seed}", *extra]
        cfg = compose("train", return_hydra_config=True, overrides=overrides)
    run = out / f"{policy}_{seed}"
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(run)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    try:
        run_chain(cfg, train)
    finally:
        GlobalHydra.instance().clear()
    return RunRecord.load(run)


@pytest.fixture(scope="module")
def chains(tmp_path_factory) -> dict[tuple[str, int], dict]:
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("grow")
    try:
        return {(p, s): _chain(out, p, s) for p, s in
                [("none", 0), ("random", 0), ("uniform", 0), ("gradmax", 0), ("random", 1)]}  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def test_every_policy_adds_the_same_budget_and_none_adds_nothing(chains) -> None:
    for (policy, _), record in chains.items():
        (edit,) = record["grow"]["edits"]
        rounds = record["grow"]["rounds"]
        assert record["status"] == "finished" and record["variant"] == policy
        assert rounds[1]["params"] - rounds[0]["params"] == edit["params_added"]
        if policy == "none":
            assert edit["params_added"] == 0 and edit["overrides"] == []
        else:
            assert abs(edit["params_added"] - edit["budget"]) <= BUDGET_TOLERANCE * edit["budget"], (policy, edit)
            assert edit["overrides"] and edit["evidence"]
    budgets = {r["grow"]["edits"][0]["budget"] for r in chains.values()}
    assert budgets == {round(0.1 * chains[("none", 0)]["grow"]["rounds"][0]["params"])}


def test_none_trains_the_same_steps_as_a_growing_policy(chains) -> None:
    steps = {p: [r["steps"] for r in rec["grow"]["rounds"]] for (p, s), rec in chains.items() if s == 0}
    assert steps["none"] == steps["random"] == steps["gradmax"] == [6, 4]


def test_continue_preserves_the_function_at_growth(chains, tmp_path) -> None:
    for (policy, _), record in chains.items():
        assert record["grow"]["edits"][0]["max_logit_change"] <= TOLERANCE, policy
    # negative control: the same check sees a change that is not preserving (pruning 4 units)
    rounds = chains[("random", 0)]["grow"]["rounds"]
    round0 = RunRecord.load(rounds[0]["run_dir"])
    ckpt = round0["checkpoints"]["last"]
    model = {**round0["config"]["model"], "widen": {"mixed3b_5x5": -4}, "init_from": ckpt}
    images = check_images(chains[("random", 0)]["config"]["data"], 8)
    assert logit_change(ckpt, model, images) > 1e-3


def test_same_seed_same_base_and_batch_order(chains) -> None:
    seed0 = [rec for (p, s), rec in chains.items() if s == 0]
    base = {json.dumps([r["grow"]["rounds"][0][m] for m in ("val/loss", "val/acc", "params")]) for r in seed0}
    assert len(base) == 1  # one base model for every policy of seed 0
    for k in (0, 1):
        orders = {json.dumps(r["grow"]["rounds"][k]["first_batches"]) for r in seed0}
        assert len(orders) == 1 and seed0[0]["grow"]["rounds"][k]["first_batches"]
    other = chains[("random", 1)]["grow"]["rounds"]
    assert other[0]["first_batches"] != seed0[0]["grow"]["rounds"][0]["first_batches"]  # seed changes the order
    mine = seed0[0]["grow"]["rounds"]
    assert mine[0]["first_batches"] != mine[1]["first_batches"]  # a round does not replay the last one's batches


def test_record_holds_round_metrics_and_test_split(chains) -> None:
    record = chains[("gradmax", 0)]
    (edit,) = record["grow"]["edits"]
    assert edit["evidence"][0].startswith("gradmax: top score") and edit["scores"]
    assert "test/acc" in record["test"] and "round0/val/loss" in record["metrics"] and "round1/test/acc" in record[
        "metrics"]  # fmt: skip
    assert record["grow"]["rounds"][0]["run_dir"].endswith("rounds/round0")


# --- policies on planted evidence (no training) -------------------------------------------------------------


@pytest.fixture(scope="module")
def arch() -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["probes=none"])
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.model, resolve=True)


def _summary(arch: dict, metrics: dict, classes=("arc_r4", "line")) -> RunSummary:
    from harness.facts.overrides import channels

    return RunSummary("planted", "base", [0], dict(metrics), model=arch, channels=channels(arch), classes=list(classes))


def test_suggest_picks_the_curve_cluster_at_the_budget_size_and_falls_back_when_silent(arch) -> None:
    budget = 5000
    planted = {"curves/mixed4a/detectors": 9, "curves/mixed4a/detectors_random_init": 0,
               "curves/mixed3b/detectors": 1, "curves/mixed3b/detectors_random_init": 1,
               "curves/mixed4a_3x3/detectors": 6}  # fmt: skip
    cfg = load_config()
    pick = policies.choose("suggest", arch, 8, budget, _summary(arch, planted), random.Random(0), cfg)
    (target,) = pick.widen
    assert target == "mixed4a_3x3" and "curve_cluster" in pick.detail["rules"] and "mixed4a" in pick.evidence[0]
    assert abs(pick.detail["params_added"] - budget) <= BUDGET_TOLERANCE * budget
    silent = policies.choose("suggest", arch, 8, budget, _summary(arch, {}), random.Random(0), cfg)  # negative control
    assert silent.detail.get("fallback") and list(silent.widen) == [f"{cfg.curve_layer}_{cfg.curve_branch}"]


def test_probe_policies_pick_the_top_score_and_need_their_probe(arch) -> None:
    metrics = {"gradmax/mixed3a_1x1/score": 1.0, "gradmax/mixed4b_5x5/score": 7.0, "gradmax/conv2d1/score": 3.0}
    pick = policies.choose("gradmax", arch, 8, 4000, _summary(arch, metrics), random.Random(0))
    assert list(pick.widen) == ["mixed4b_5x5"]
    with pytest.raises(ConfigError, match="needs the effective_rank probe"):
        policies.choose("effective_rank", arch, 8, 4000, _summary(arch, metrics), random.Random(0))


def test_measured_policies_grow_where_the_measurement_is_best(arch) -> None:
    """Planted: the measurement (tier 0's gain, or TINY's score) is best at conv2d2; negative control: a flat
    measurement invents no preference (the first candidate in forward order, as every argmax here)."""
    candidates = [Candidate(t, "widen", t, 4) for t in ("conv2d0", "conv2d2", "mixed3b_5x5")]

    def planted(cands):
        return {c.name: 0.5 if c.name == "conv2d2" else 0.01 * i for i, c in enumerate(cands)}

    pick = policies.choose("oracle", arch, 8, 4000, _summary(arch, {}), random.Random(0), measured=planted)
    assert list(pick.widen) == ["conv2d2"] and pick.evidence[0].startswith("oracle: top score 0.5 at conv2d2")
    assert abs(pick.detail["params_added"] - 4000) <= BUDGET_TOLERANCE * 4000
    for policy in policies.MEASURED_POLICIES:
        assert list(policies.pick_best(policy, planted(candidates), candidates).widen) == ["conv2d2"]
        flat = policies.pick_best(policy, dict.fromkeys((c.name for c in candidates), 0.0), candidates)
        assert list(flat.widen) == [candidates[0].target]
        with pytest.raises(ConfigError, match=f"grow.policy={policy} measures the trained network"):
            policies.choose(policy, arch, 8, 4000, _summary(arch, {}), random.Random(0))
    with pytest.raises(ConfigError, match="grow.oracle_set_b must be an integer >= 1"):
        policies.measured_sets({"oracle_set_b": 0})


def test_random_is_seeded_and_uniform_spreads_in_proportion_to_width(arch) -> None:
    candidates = policies.candidates_for(arch, 8, 4000, inserts=False)
    draws = [policies.pick_random(candidates, random.Random(s)).widen for s in range(6)]
    again = [policies.pick_random(candidates, random.Random(s)).widen for s in range(6)]
    assert draws == again and len({next(iter(d)) for d in draws}) > 1
    widen, added, f = policies.uniform_widen(arch, 8, 12000)
    assert abs(added - 12000) <= 0.1 * 12000 and len(widen) > 10 and all(t.startswith("mixed") for t in widen)
    from harness.facts.overrides import channels

    width = channels(arch)
    assert all(n == round(f * width[t]) for t, n in widen.items())
    assert count_params({**arch, "widen": widen}, 8) - count_params(arch, 8) == added


def test_bad_grow_settings_get_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown grow.policy 'smart'; valid: suggest, gradmax"):
        _chain(tmp_path, "smart", 0)
    with pytest.raises(ConfigError, match="grow.mode"):
        _chain(tmp_path, "none", 0, "grow.mode=later")
    with pytest.raises(ConfigError, match=r"grow.probes.gradmax does not list it \(has: none\)"):
        _chain(tmp_path, "gradmax", 0, "grow.probes.gradmax=[]")  # before round 0 trains
    assert not (tmp_path / "gradmax_0" / "rounds").exists()


# --- end to end: a harness-train multirun, then harness-compare --baseline random --------------------------


def test_tiny_sweep_end_to_end_and_compare(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "harness.train", "-m", "experiment=grow_loop", "grow.policy=suggest,random",
           "seed=0,1", *TINY, "probes.curves.orientations=36", "probes.curves.radii=[0.08,0.125,0.2]",
           f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [RunRecord.load(p) for p in sorted(sweep.glob("*/record.json"))]
    assert sorted((r["variant"], r["seed"]) for r in records) == [("random", 0), ("random", 1), ("suggest", 0),
                                                                   ("suggest", 1)]  # fmt: skip
    assert all(r["grow"]["edits"] and "test/acc" in r["test"] for r in records)
    from harness.compare.pipeline import compare

    result = compare([sweep], out=tmp_path / "compare", baseline="random")
    assert len(result.runs) == 4  # the rounds' own records are part of their chains, not runs
    assert {e.metric for e in result.paired} >= {"test/acc", "val/loss"} and all(e.n_pairs == 2 for e in result.paired)
    assert "paired by seed (2 seeds): suggest - random test/acc" in (tmp_path / "compare" / "headline.txt").read_text()
    assert (tmp_path / "compare" / "paired.csv").is_file()
