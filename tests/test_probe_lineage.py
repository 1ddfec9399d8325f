"""Lineage probe: a widened unit that copies an old one is a duplicate, one with zero weights and a negative
bias is dead, an independent one is neither; curve/dissect verdicts come from (faked) probes, by priority."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from harness.facts.errors import ConfigError
from harness.probes import Probe, ProbeContext, ProbeResult, ProbeSet
from harness.probes.lineage import LineageProbe
from harness.probes.units import parse_units
from tests.helpers import OneLayerNet

# Old units 0..2 read R, G, B; widen added 3..5: 3 copies unit 0, 4 is dead, 5 = relu(R - G) (independent).
WEIGHTS = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0], [0, 0, 0], [1.0, -1.0, 0]]
BIASES = [0.0, 0.0, 0.0, 0.0, -1.0, 0.0]


pytestmark = pytest.mark.usefixtures("one_thread")


def widened() -> OneLayerNet:
    """layer: 6 units of a 1x1 conv (WEIGHTS, BIASES), the last 3 added by a widen edit; no head."""
    return OneLayerNet(WEIGHTS, bias=BIASES)


def make_ctx(widen: dict | None = None) -> ProbeContext:
    torch.manual_seed(0)
    probe_set = ProbeSet(images=torch.rand(16, 3, 8, 8), labels=torch.zeros(16, dtype=torch.long), classes=("a",))
    return ProbeContext(widened(), ["layer"], probe_set, widen={"layer": 3} if widen is None else widen, seed=0)


def fake_probe(monkeypatch: pytest.MonkeyPatch, probe: str, column: str, units: set[int] | None) -> None:
    if units is None:
        monkeypatch.setitem(sys.modules, f"harness.probes.{probe}", None)
        return

    class Fake(Probe):
        name = probe

        def run(self, ctx: ProbeContext) -> ProbeResult:
            return ProbeResult(tables={"units": [{"layer": "layer", "unit": u, column: u in units} for u in range(6)]})

    module = types.ModuleType(f"harness.probes.{probe}")
    module.Fake = Fake
    monkeypatch.setitem(sys.modules, f"harness.probes.{probe}", module)


def categories(result: ProbeResult) -> dict[int, str]:
    return {r["unit"]: r["category"] for r in result.tables["units"]}


def test_duplicate_dead_and_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, "curves", "is_curve_detector", None)
    fake_probe(monkeypatch, "dissect", "is_detector", None)
    ctx = make_ctx()
    ctx.model.train()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    result = LineageProbe().run(ctx)
    found = categories(result)
    assert found[3] == "duplicate" and found[4] == "dead"
    assert found[5] == "other"  # negative control: correlated with R, but far below 0.9
    assert [found[u] for u in range(3)] == ["other"] * 3  # independent old units
    rows = {r["unit"]: r for r in result.tables["units"]}
    assert rows[3]["best_match"] == 0 and rows[3]["best_corr"] == pytest.approx(1.0)
    assert rows[3]["added"] and not rows[0]["added"]
    assert rows[5]["best_corr"] < 0.9
    s = result.scalars
    assert s["layer/added/duplicate"] == 1.0 and s["layer/added/dead"] == 1.0 and s["layer/old/other"] == 3.0
    assert s["layer/added/duplicate_frac"] == pytest.approx(1 / 3)
    assert "no_curves" in result.info and "no_dissect" in result.info
    assert all(not m._forward_hooks for m in ctx.model.modules())
    assert all(m.training for m in ctx.model.modules())
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())


def test_verdict_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    # Curves says 3 (a duplicate), 4 (dead) and 5 are curve detectors; dissect says 1 and 5 are detectors.
    fake_probe(monkeypatch, "curves", "is_curve_detector", {3, 4, 5})
    fake_probe(monkeypatch, "dissect", "is_detector", {1, 5})
    found = categories(LineageProbe().run(make_ctx()))
    assert found == {0: "other", 1: "other_detector", 2: "other", 3: "duplicate", 4: "dead", 5: "curve_detector"}


def test_old_duplicates_and_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probe(monkeypatch, "curves", "is_curve_detector", None)
    fake_probe(monkeypatch, "dissect", "is_detector", None)
    # Treat only the last 2 as added: old unit 3 copies old unit 0, so both old units are duplicates.
    found = categories(LineageProbe().run(make_ctx(widen={"layer": 2})))
    assert found[0] == found[3] == "duplicate" and found[1] == "other"
    # With a threshold no correlation can pass, nothing is a duplicate.
    found = categories(LineageProbe(duplicate_corr=1.0).run(make_ctx()))
    assert "duplicate" not in found.values()


def test_no_widen_is_skipped() -> None:
    result = LineageProbe().run(make_ctx(widen={}))
    assert result.info["skipped"] == "no widen edits in this run" and not result.scalars and not result.tables


def test_settings_validated() -> None:
    with pytest.raises(ConfigError):
        LineageProbe(duplicate_corr=0.0)
    assert parse_units(["layer:1", "layer:1", "x:y:2"], {"layer": 3, "x:y": 4}) == {"layer": [1], "x:y": [2]}
