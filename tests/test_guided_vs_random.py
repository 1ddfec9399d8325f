"""The guided-vs-random wrapper (over experiment=grow_loop, tested end to end in test_grow_loop), its statistics,
and its default world."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from harness.data.shapes import ARC_LADDER_LENGTH, ARC_LADDER_RADIUS
from harness.data.world import CLASSES, World
from harness.facts.stats import welch
from harness.suggest.verdict import judge

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "guided_vs_random.py"


def _script():
    spec = importlib.util.spec_from_file_location("guided_vs_random", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_is_a_thin_wrapper_over_the_grow_loop(capsys) -> None:
    assert _script().main(["--out", "/tmp/gvr", "--seeds", "3", "--dry-run", "grow.steps=50"]) == 0
    train, compare, report = capsys.readouterr().out.splitlines()
    assert "experiment=grow_loop grow.policy=suggest,random seed=range(3)" in train and "grow.steps=50" in train
    assert compare.endswith("harness.compare /tmp/gvr --baseline random")
    assert "harness.grow.report /tmp/gvr" in report


def test_welch_interval_and_verdicts() -> None:
    diff, ci, p = welch([0.80, 0.82, 0.81, 0.83], [0.70, 0.72, 0.71, 0.69])
    assert diff == pytest.approx(0.11) and ci[0] > 0 and p < 0.001
    from scipy import stats

    assert p == pytest.approx(
        stats.ttest_ind([0.80, 0.82, 0.81, 0.83], [0.70, 0.72, 0.71, 0.69], equal_var=False).pvalue
    )
    assert judge([0.80, 0.82, 0.81, 0.83], [0.70, 0.72, 0.71, 0.69]).text.startswith("guided beats random")
    assert judge([0.70, 0.72, 0.71], [0.80, 0.83, 0.81]).text.startswith("random beats guided")
    null = judge([0.70, 0.80, 0.75], [0.74, 0.72, 0.79])
    assert null.text.startswith("no detectable difference") and null.ci[0] < 0 < null.ci[1]
    assert judge([0.7], [0.6]).ci is None


def test_curvature_world_ladder_and_default_world_unchanged() -> None:
    world = World(classes=["arc_r4", "arc_r7", "arc_r12", "arc_r20", "line"], image_size=64)
    batch = world.generate(200, seed=3)
    for i, name in enumerate(world.classes[:4]):
        lo, hi = ARC_LADDER_RADIUS[name]
        radius = batch.attrs["radius"][batch.labels == i]
        assert len(radius) and lo <= float(radius.min()) and float(radius.max()) <= hi
    assert batch.masks[:, 0].flatten(1).any(1)[batch.labels < 4].all()  # every arc drawn, in the curve mask
    assert ARC_LADDER_LENGTH[1] / ARC_LADDER_RADIUS["arc_r4"][0] < 2 * math.pi  # arcs never close
    assert World().classes == CLASSES and "arc_r4" not in CLASSES  # the default world keeps its classes
    again = world.generate(200, seed=3)
    assert (again.images == batch.images).all()


def test_constant_arms_get_the_same_permutation_p_as_harness_compare() -> None:
    from harness.compare.stats import metric_effect

    guided, random = [0.9, 0.9], [0.8, 0.8]
    verdict = judge(guided, random)
    assert verdict.p == pytest.approx(1 / 3) == metric_effect("test/acc", random, guided).p  # not 0.0
    assert verdict.ci == pytest.approx((0.1, 0.1))
    same = judge([0.9, 0.9], [0.9, 0.9])  # negative control: nothing differs, so no p at all
    assert same.p is None and "n/a" in same.text and same.text.startswith("no detectable difference")
