"""GradMax probe: B matches autograd of an actually widened net, a planted gradient ranks its target first,
a dead head scores every target 0, and the model is left untouched."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from harness.models import InceptionV1, resize
from harness.models.consumers import wiring
from harness.probes import ProbeContext, ProbeSet
from harness.probes.gradients import loss_gradients
from harness.probes.gradmax import GradMax, gradmax_rows, linear_surrogate


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
