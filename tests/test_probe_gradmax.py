"""GradMax probe: B matches autograd of an actually widened net, a planted gradient ranks its target first,
a dead head scores every target 0, and the model is left untouched; the same on any traced model (targets by
module path), where a gate on the path skips its target with a reason."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision

from harness.facts.errors import ConfigError
from harness.models import InceptionV1, resize
from harness.models.consumers import wiring, wirings
from harness.models.graph_widen import widen_modules
from harness.probes import ProbeContext, ProbeSet
from harness.probes.gradients import loss_gradients
from harness.probes.gradmax import GradMax, b_shape, gradmax_rows, linear_surrogate
from tests.helpers import ChannelsLastNet, GatedNet, TinyResNet


def _net(**kw) -> InceptionV1:
    torch.manual_seed(0)
    args = dict(num_classes=4, width=0.25, batch_norm=False, lrn=False, last_layer="mixed3b") | kw
    return InceptionV1(**args).eval()


def _probe_set(n: int = 6, size: int = 32, seed: int = 1) -> ProbeSet:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=gen)
    return ProbeSet(images=images, labels=torch.randint(4, (n,), generator=gen), classes=("a", "b", "c", "d"))


def _b_matrix(net: InceptionV1, ps: ProbeSet, target: str) -> torch.Tensor:
    w = wiring(net, target)
    ctx = ProbeContext(net, [], ps, batch_size=4)  # 2 batches: the sum over batches is checked too
    total = 0
    for batch in loss_gradients(ctx, [c.module for c in w.consumers], [w.producer]):
        total = total + gradmax_rows(w, batch.inputs[id(w.producer)], [batch.grads[id(c.module)] for c in w.consumers])
    return total.double()


@pytest.mark.parametrize("target", ["conv2d1", "mixed3a_5x5_bottleneck", "mixed3b_1x1"])  # 3x3, 5x5, linear head
def test_b_matches_autograd_of_a_widened_net(target: str, one_thread) -> None:
    net, ps = _net(), _probe_set()
    b = _b_matrix(net, ps, target)
    wide = resize(net, {target: 1}).eval()
    w = wiring(wide, target)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w.producer.weight[-1].zero_()  # GradMax's function-preserving init: zero fan-in ...
        w.producer.bias[-1] = 1e-5  # ... and a unit just above 0, so ReLU's slope there is 1 as GradMax assumes
        fan_out = []
        for c in w.consumers:  # a random fan-out
            col = torch.randn(c.module.weight[:, c.channels.stop - 1].shape, generator=gen)
            c.module.weight[:, c.channels.stop - 1] = col
            fan_out.append(col.flatten())
    logits = wide(ps.images)
    loss = F.cross_entropy(logits, ps.labels, reduction="mean")
    (grad,) = torch.autograd.grad(loss, [w.producer.weight])
    expected = grad[-1].flatten().double()
    got = torch.cat(fan_out).double() @ b
    assert expected.abs().max() > 1e-4  # not a trivially zero comparison
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-6)


def test_planted_gradient_ranks_its_target_first_and_dead_head_scores_zero(one_thread) -> None:
    net, ps = _net(), _probe_set()
    sl = wiring(net, "mixed3a_5x5").consumers[0].channels  # mixed3a_5x5's channels in mixed3a's concat
    with torch.no_grad():  # nothing reads mixed3a_5x5: the gradient behind mixed3a_5x5_bottleneck is zero
        for c in wiring(net, "mixed3a_5x5").consumers:
            c.module.weight[:, sl] = 0
    targets = ["mixed3a_3x3_bottleneck", "mixed3a_5x5_bottleneck"]
    before = copy.deepcopy(net.state_dict())
    s = GradMax(layers=targets, k=2).run(ProbeContext(net, [], ps)).scalars
    assert s["mixed3a_5x5_bottleneck/score"] == 0.0
    assert s["mixed3a_3x3_bottleneck/score"] > 1e-4
    assert s["mixed3a_3x3_bottleneck/score_per_param"] > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model is untouched
    assert all(p.grad is None for p in net.parameters()) and not net.training

    with torch.no_grad():  # negative control: a head that reads nothing passes no gradient below itself ...
        net.fc.weight.zero_()
    dead = GradMax(k=2).run(ProbeContext(net, [], ps)).scalars
    assert len(dead) == 2 * (3 + 2 * 6)
    head = {"mixed3b_1x1", "mixed3b_3x3", "mixed3b_5x5", "mixed3b_pool_reduce"}  # ... but new units feeding it
    assert {k for k, v in dead.items() if v != 0.0} == {f"{t}/{m}" for t in head for m in ("score", "score_per_param")}


def test_k_and_budget() -> None:
    net, ps = _net(), _probe_set(n=4)
    one = GradMax(layers=["mixed3b_1x1"], k=1).run(ProbeContext(net, [], ps))
    three = GradMax(layers=["mixed3b_1x1"], k=3).run(ProbeContext(net, [], ps))
    assert three.scalars["mixed3b_1x1/score"] > one.scalars["mixed3b_1x1/score"] > 0
    row = one.tables["targets"][0]
    assert row["fan_out"] == 4 and row["fan_in"] == 64 and row["params_per_unit"] == 69  # fc 4 outs; mixed3a 64 in
    budget = GradMax(layers=["mixed3b_1x1"], budget=69 * 3).run(ProbeContext(net, [], ps))
    assert budget.tables["targets"][0]["k"] == 3
    assert budget.scalars["mixed3b_1x1/score"] == pytest.approx(three.scalars["mixed3b_1x1/score"])
    with pytest.raises(ConfigError, match="gradmax.k"):
        GradMax(k=0)
    with pytest.raises(ConfigError, match="unknown widen target 'mixed9x'"):
        GradMax(layers=["mixed9x"]).run(ProbeContext(net, [], ps))


def test_max_pool_surrogate_is_a_mean_over_valid_windows() -> None:
    net = _net()
    x = torch.full((1, 2, 7, 7), 3.0)
    for pool in (net.features.maxpool1, net.features.mixed3a.pool):
        out = linear_surrogate(pool)(x)
        torch.testing.assert_close(out, torch.full_like(out, 3.0))  # borders are not diluted by padding
    with pytest.raises(ConfigError, match="cannot linearise a Conv2d"):
        linear_surrogate(torch.nn.Conv2d(1, 1, 1))


# --- any model: wiring from the traced graph -------------------------------------------------------------------
def _ps32(n: int = 6) -> ProbeSet:
    return _probe_set(n=n, size=32)


@pytest.mark.parametrize(
    ("make", "target"),
    [(TinyResNet, "block.conv1"), (TinyResNet, "conv3"), (TinyResNet, "fc1"),  # conv, flatten -> linear, linear
     (ChannelsLastNet, "stem"), (ChannelsLastNet, "fc_a"), (ChannelsLastNet, "fc_b")],  # permute, GELU, mean
)  # fmt: skip
def test_b_matches_autograd_on_a_traced_graph(make, target: str, one_thread) -> None:
    """B of a generic target times a random fan-out equals the fan-in gradient of the net actually widened by
    model.widen (new unit: zero fan-in, just above 0 so ReLU's slope is 1; GELU's slope at 0 is 0.5). Just above:
    1e-8, since at 1e-5 the unit's output already flips ReLUs of the residual sum that sit within 1e-4 of 0."""
    torch.manual_seed(0)
    net, ps = make().eval(), _ps32()
    (w,) = wirings(net, [target], image_size=32)
    ctx = ProbeContext(net, [], ps, batch_size=4)
    b = sum(gradmax_rows(w, batch.inputs[id(w.producer)], [batch.grads[id(c.module)] for c in w.consumers])
            for batch in loss_gradients(ctx, [c.module for c in w.consumers], [w.producer])).double()  # fmt: skip
    assert b.shape == b_shape(w)
    wide = widen_modules(net, {target: 1}, image_size=32).eval()
    (ww,) = wirings(wide, [target], image_size=32)
    width = w.producer.weight.shape[0] + 1
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        ww.producer.weight[-1].zero_()
        if ww.producer.bias is not None and not isinstance(wide, ChannelsLastNet):
            ww.producer.bias[-1] = 1e-8
        elif not isinstance(wide, ChannelsLastNet):
            wide.block.bn1.bias[-1] = 1e-8  # block.conv1 has no bias: its batch norm's
        fan_out = []
        for c in ww.consumers:
            per_unit = (c.channels.stop - c.channels.start) // width  # columns of one unit (4 after the flatten)
            cols = c.module.weight[:, c.channels.stop - per_unit : c.channels.stop]
            cols.copy_(torch.randn(cols.shape, generator=gen))
            fan_out.append(cols.flatten())
    loss = F.cross_entropy(wide(ps.images), ps.labels, reduction="mean")
    (grad,) = torch.autograd.grad(loss, [ww.producer.weight])
    expected = grad[-1].flatten().double()
    assert expected.abs().max() > 1e-5
    torch.testing.assert_close(torch.cat(fan_out).double() @ b, expected, rtol=2e-3, atol=1e-7)


def test_planted_gradient_and_dead_head_on_a_traced_graph(one_thread) -> None:
    net, ps = TinyResNet().eval(), _ps32()
    with torch.no_grad():  # the block's second batch norm passes nothing: no gradient behind block.conv2
        net.block.bn2.weight.zero_()
    s = GradMax(k=2).run(ProbeContext(net, [], ps)).scalars
    assert set(s) == {f"{t}/{m}" for t in ("block.conv1", "conv3", "fc1") for m in ("score", "score_per_param")}
    assert s["block.conv1/score"] == 0.0 and s["conv3/score"] > 1e-4 and s["fc1/score"] > 1e-4
    with torch.no_grad():  # negative control: a head reading nothing; only the layer feeding it keeps a score
        net.fc2.weight.zero_()
    dead = GradMax(k=2).run(ProbeContext(net, [], ps)).scalars
    assert {k for k, v in dead.items() if v != 0.0} == {"fc1/score", "fc1/score_per_param"}


def test_gates_are_skipped_with_a_reason_and_the_rest_scored(one_thread) -> None:
    result = GradMax(k=1).run(ProbeContext(GatedNet().eval(), [], _ps32()))
    assert set(result.info["skipped_targets"]) == {"a", "excite"}
    assert all("gate" in why for why in result.info["skipped_targets"].values())
    assert {k.split("/")[0] for k in result.scalars} == {"squeeze", "b"} and result.scalars["b/score"] > 0
    small = GradMax(k=1, max_entries=20).run(ProbeContext(TinyResNet().eval(), [], _ps32()))
    assert "over gradmax.max_entries=20" in small.info["skipped_targets"]["block.conv1"]
    assert small.info["skipped"].startswith("no widen target could be scored")


def test_torchvision_resnet18_smoke(one_thread) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=4).eval()
    targets = ["layer1.0.conv1", "layer2.0.conv1", "layer3.1.conv1"]  # the layer4 ones: 4608 x 4608 B, ~15 s
    result = GradMax(layers=targets, k=2).run(ProbeContext(net, [], _ps32(n=4), batch_size=2))
    assert [r["target"] for r in result.tables["targets"]] == targets and "skipped_targets" not in result.info
    assert all(result.scalars[f"{t}/score"] > 0 for t in targets)
    assert result.tables["targets"][1]["fan_in"] == 64 * 9 and result.tables["targets"][1]["fan_out"] == 128 * 9


def test_graph_steps_are_linearised_or_refused() -> None:
    import operator

    from harness.models.consumers import Op
    from harness.probes.gradmax import follow

    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    u, axis, flat = follow(x, 1, [Op(F.max_pool2d, (2,)), Op(operator.mul, operand="scalar", value=0.5), Op("relu_")])
    torch.testing.assert_close(u, F.avg_pool2d(x, 2) * 0.5)  # relu's slope just above 0 is 1
    assert (axis, flat) == (1, False)
    u, axis, _ = follow(x, 1, [Op(F.gelu), Op("permute", (0, 2, 3, 1)), Op("mean", ((1, 2),))])
    torch.testing.assert_close(u, 0.5 * x.mean((2, 3)))  # GELU's slope at 0 is 0.5; units end on the last axis
    assert axis == 1 and u.shape == (1, 2)
    assert follow(x, 1, [torch.nn.Flatten()])[0].shape == (1, 2, 16) and follow(x, 1, [Op(torch.flatten, (1,))])[2]
    for step in (Op(torch.amax, ((2, 3),)), Op(operator.mul, operand="tensor"), torch.nn.Conv2d(2, 2, 3, groups=2)):
        with pytest.raises(ConfigError, match="cannot linearise"):
            follow(x, 1, [step])
