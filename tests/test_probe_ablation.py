"""Ablation probe: on a model whose output reads only unit 0, zeroing unit 0 costs loss/accuracy and
zeroing unit 1 (no outgoing weights) costs exactly nothing; groups, controls, hooks and weights checked."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.probes import Probe, ProbeContext, ProbeResult, ProbeSet
from harness.probes.ablation import AblationProbe
from tests.helpers import OneLayerNet

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny() -> OneLayerNet:
    """layer (1x1 conv): unit 0 = red, unit 1 = green; logits = [u0 - 0.5, 0.5 - u0] (unit 1 unused)."""
    return OneLayerNet([[1.0, 0, 0], [0, 1.0, 0]], bias=0.0, classes=2, head=([[1.0, 0.0], [-1.0, 0.0]], [-0.5, 0.5]))


def make_ctx(widen: dict | None = None) -> ProbeContext:
    torch.manual_seed(0)
    n = 40
    red = torch.cat([torch.rand(n // 2) * 0.4, 0.6 + torch.rand(n // 2) * 0.4])  # away from the 0.5 boundary
    colours = torch.stack([red, torch.rand(n), torch.rand(n)], dim=1)
    images = colours[:, :, None, None].expand(n, 3, 8, 8).clone()
    labels = (red <= 0.5).long()  # class 0 "red" when the red channel is high
    probe_set = ProbeSet(images=images, labels=labels, classes=("red", "dark"))
    return ProbeContext(tiny(), ["layer"], probe_set, widen=widen or {}, seed=3, batch_size=16)


def fake_curves(monkeypatch: pytest.MonkeyPatch, detectors: set[int] | None) -> None:
    """Install a stand-in curves probe (or, with None, make it unavailable)."""
    if detectors is None:
        monkeypatch.setitem(sys.modules, "harness.probes.curves", None)
        return

    class FakeCurves(Probe):
        name = "curves"

        def run(self, ctx: ProbeContext) -> ProbeResult:
            rows = [{"layer": "layer", "unit": u, "is_curve_detector": u in detectors} for u in range(2)]
            return ProbeResult(tables={"units": rows})

    module = types.ModuleType("harness.probes.curves")
    module.FakeCurves = FakeCurves
    monkeypatch.setitem(sys.modules, "harness.probes.curves", module)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class Plain(nn.Module):
    """The same network without resume_point/forward_from/forward_after: ablation makes full passes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @property
    def channels(self) -> dict[str, int]:
        return self.net.channels

    def hook_points(self) -> dict[str, nn.Module]:
        return self.net.hook_points()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_used_unit_costs_accuracy_unused_unit_costs_nothing() -> None:
    ctx = make_ctx()
    ctx.model.train()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    s0 = AblationProbe(groups=[], units=["layer:0"], random_draws=0).run(ctx).scalars
    s1 = AblationProbe(groups=[], units=["layer:1"], random_draws=2).run(ctx).scalars
    # Planted: every image is classified by unit 0 alone; without it every image reads "dark".
    assert s0["layer/custom/delta_loss"] > 0.1
    assert s0["layer/custom/delta_acc"] == pytest.approx(-0.5)
    assert s0["layer/custom/delta_acc/red"] == pytest.approx(-1.0)
    assert s0["layer/custom/delta_acc/dark"] == 0.0
    assert s0["layer/custom/size"] == 1.0
    assert "layer/random_custom/delta_loss" not in s0  # random_draws=0: no control
    # Negative control: unit 1 has no outgoing weights.
    assert s1["layer/custom/delta_loss"] == 0.0 and s1["layer/custom/delta_acc"] == 0.0
    # Its random control can only draw unit 0, the one that matters.
    assert s1["layer/random_custom/delta_acc"] == pytest.approx(-0.5)
    assert no_hooks(ctx.model)
    assert all(m.training for m in ctx.model.modules())
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert torch.equal(ctx.logits(), make_ctx().logits())  # the model computes what it did before


def test_curve_and_added_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_curves(monkeypatch, {0})
    result = AblationProbe(random_draws=1).run(make_ctx(widen={"layer": 1}))
    s = result.scalars
    assert s["layer/curve_detectors/size"] == 1.0 and s["layer/curve_detectors/delta_acc"] == pytest.approx(-0.5)
    assert s["layer/random_curve_detectors/delta_acc"] == 0.0  # the only other unit is the unused one
    assert s["layer/added/delta_loss"] == 0.0  # widen added unit 1 (the last one)
    groups = {(r["layer"], r["group"]): r for r in result.tables["groups"]}
    assert groups[("layer", "added")]["units"] == "1"
    assert {r["class"] for r in result.tables["classes"]} == {"red", "dark"}


def test_curves_unavailable_or_empty_skips_group(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_curves(monkeypatch, None)
    result = AblationProbe(groups=["curve_detectors"]).run(make_ctx())
    assert "not available" in result.info["curve_detectors"] and not result.scalars
    fake_curves(monkeypatch, set())
    assert not AblationProbe(groups=["curve_detectors"]).run(make_ctx()).scalars


def test_random_control_is_seeded() -> None:
    def draws(seed: int) -> list[str]:
        torch.manual_seed(0)
        ctx = make_ctx()
        ctx.model, ctx.seed = OneLayerNet(units=6, classes=2), seed  # 6 units: draws vary, only with the seed
        rows = AblationProbe(groups=[], units=["layer:0", "layer:1"], random_draws=3).run(ctx).tables["groups"]
        return [r["units"] for r in rows if r["group"] == "random_custom"]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


@pytest.mark.parametrize("spec", ["layer:2", "layer:x", "nolayer:0", "layer"])
def test_bad_units_raise(spec: str) -> None:
    with pytest.raises(ConfigError):
        AblationProbe(units=[spec]).run(make_ctx())


def test_bad_group_raises() -> None:
    with pytest.raises(ConfigError, match="curve_detectors"):
        AblationProbe(groups=["nope"])


def test_resumed_passes_equal_full_passes() -> None:
    """InceptionV1 resumes ablated passes at the layer's stage: same deltas as full passes, one intact pass."""
    from harness.models import InceptionV1

    torch.manual_seed(0)
    images = torch.rand(24, 3, 48, 48)
    probe_set = ProbeSet(images=images, labels=torch.arange(24) % 4, classes=("a", "b", "c", "d"))
    net = InceptionV1(num_classes=4, width=0.25).eval()
    units = ["mixed3b_5x5:0", "mixed3b_5x5:3", "conv2d2:1", "mixed4a:7"]
    probe = AblationProbe(groups=[], units=units, random_draws=2)
    resumed = probe.run(ProbeContext(net, ["mixed3b"], probe_set, seed=1, batch_size=10))

    full = probe.run(ProbeContext(Plain(net), ["mixed3b"], probe_set, seed=1, batch_size=10))
    assert set(resumed.scalars) == set(full.scalars) and len(resumed.scalars) > 12
    assert any(abs(v) > 1e-4 for k, v in full.scalars.items() if k.endswith("delta_loss"))  # the units matter
    for key, value in full.scalars.items():
        assert resumed.scalars[key] == pytest.approx(value, abs=1e-5), key
    assert no_hooks(net)


@pytest.mark.parametrize("resume", ["resumed", "full_passes", "from_cache"])
def test_batched_passes_equal_one_pass_per_group(resume: str) -> None:
    """Batch expansion (several unit groups per forward pass, each copy of the batch with its own units zeroed)
    gives the numbers of one pass per group, with a group count that does not divide evenly into passes; and
    stage outputs taken from the round's activation cache give the numbers of a pass of their own."""
    from harness.models import InceptionV1

    torch.manual_seed(0)
    probe_set = ProbeSet(images=torch.rand(20, 3, 40, 40), labels=torch.arange(20) % 4, classes=("a", "b", "c", "d"))
    net = InceptionV1(num_classes=4, width=0.25, last_layer="mixed4a").eval()
    units = ["mixed3b_5x5:0", "mixed3b_5x5:3", "mixed3a:1", "mixed4a:7"]
    ctx = ProbeContext(net if resume != "full_passes" else Plain(net), ["mixed3a", "mixed3b", "mixed4a"], probe_set,
                       seed=1, batch_size=8)  # 8, 8, 4 images per pass  # fmt: skip
    if resume == "from_cache":
        ctx.activations()  # what the first probe of a round does: mixed3a, mixed3b and mixed4a are now cached
    runs = [AblationProbe(groups=[], units=units, random_draws=4, groups_per_pass=n).run(ctx) for n in (1, 3, 64)]
    if resume == "from_cache":  # against one pass per group without the cache
        runs.append(AblationProbe(groups=[], units=units, random_draws=4, groups_per_pass=1).run(
            ProbeContext(net, ["mixed3b"], probe_set, seed=1, batch_size=8)))  # fmt: skip
    one, *batched = runs
    assert len(one.tables["groups"]) == 6  # custom + random_custom at three layers
    assert any(abs(v) > 1e-4 for k, v in one.scalars.items() if k.endswith("delta_loss"))
    for other in batched:
        assert set(other.scalars) == set(one.scalars)
        for key, value in one.scalars.items():
            assert other.scalars[key] == pytest.approx(value, abs=1e-6), key
    if resume == "from_cache":  # every layer a cached stage output: the intact logits too come from the cache
        stages = ["mixed3b:0", "mixed3b:5", "mixed4a:7"]
        calls: list[int] = []
        handle = net.features.conv2d0.register_forward_hook(lambda *_: calls.append(1))
        cached = AblationProbe(groups=[], units=stages).run(ctx)
        handle.remove()
        assert not calls  # no pass through the stem
        fresh = AblationProbe(groups=[], units=stages).run(ProbeContext(net, ["conv2d0"], probe_set, seed=1))
        assert cached.info["loss"] == pytest.approx(fresh.info["loss"], abs=1e-6)
        assert cached.scalars == pytest.approx(fresh.scalars, abs=1e-6)
    assert no_hooks(net)
    with pytest.raises(ConfigError, match="groups_per_pass"):
        AblationProbe(groups_per_pass=0)
