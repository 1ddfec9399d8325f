"""SensLI probe: matches autograd of an actually inserted zero-init residual block, a position with no
downstream gradient scores 0 while one with gradient scores > 0, and bad settings fail clearly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.probes import ProbeContext, ProbeSet
from harness.probes.sensli import SensLI


def _net() -> InceptionV1:
    torch.manual_seed(0)
    return InceptionV1(num_classes=4, width=0.25, batch_norm=True, lrn=False, last_layer="mixed3b").eval()


def _probe_set(n: int = 6) -> ProbeSet:
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, 32, 32, generator=gen)
    return ProbeSet(images=images, labels=torch.randint(4, (n,), generator=gen), classes=("a", "b", "c", "d"))


@pytest.mark.parametrize("kernel", [1, 3])
def test_matches_autograd_of_an_inserted_zero_residual_block(kernel: int, one_thread) -> None:
    net, ps = _net(), _probe_set()
    score = SensLI(layers=["mixed3a"], kernel=kernel).run(ProbeContext(net, [], ps, batch_size=4)).scalars
    channels = net.channels["mixed3a"]
    block = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
    nn.init.zeros_(block.weight)
    handle = net.features.mixed3a.register_forward_hook(lambda m, a, out: out + block(out))  # y = x + conv(x)
    try:
        loss = F.cross_entropy(net(ps.images), ps.labels)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(loss, [block.weight])
    assert float(grad.norm()) > 1e-4
    assert score["mixed3a/score"] == pytest.approx(float(grad.norm()), rel=1e-4)


def test_zero_downstream_gradient_scores_zero(one_thread) -> None:
    net, ps = _net(), _probe_set()
    block = net.features.mixed3b
    with torch.no_grad():  # mixed3b ignores its input: no gradient reaches mixed3a's output ...
        for unit in (block.conv_1x1, block.conv_3x3_bottleneck, block.conv_5x5_bottleneck, block.pool_reduce):
            unit.conv.weight.zero_()
        for unit in block.branches().values():  # ... while mixed3b itself still outputs something the head reads
            unit.bn.bias.fill_(0.1)
    result = SensLI().run(ProbeContext(net, [], ps))
    assert result.scalars["mixed3a/score"] == 0.0
    assert result.scalars["mixed3b/score"] > 1e-4
    assert [row["position"] for row in result.tables["positions"]] == ["mixed3a", "mixed3b"]
    assert all(p.grad is None for p in net.parameters()) and not net.training


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="sensli.kernel must be an odd"):
        SensLI(kernel=2)
    with pytest.raises(ConfigError, match="unknown insert position 'mixed3a_1x1'.*valid: mixed3a, mixed3b"):
        SensLI(layers=["mixed3a_1x1"]).run(ProbeContext(_net(), [], _probe_set()))
