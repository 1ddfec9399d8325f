"""Effective-rank probe: planted low-rank vs full-rank activations separate, [I; -I] uses every dimension,
a constant layer uses none, and the fresh-init control and ratio are reported; on any model, by module path."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.probes import ProbeContext, ProbeSet
from harness.probes.effective_rank import EffectiveRank, entropy_rank, rank_fraction
from tests.helpers import ChannelsLastNet


def test_planted_ranks() -> None:
    eye = torch.cat([torch.eye(16), -torch.eye(16)])  # identity-like, centred already: full rank
    assert rank_fraction(eye, eps=0.01, max_rows=100) == 1.0
    gen = torch.Generator().manual_seed(0)
    low = torch.randn(500, 3, generator=gen) @ torch.randn(3, 16, generator=gen)  # rank 3 of 16
    full = torch.randn(500, 16, generator=gen)
    assert rank_fraction(low, 0.01, 4096) == pytest.approx(3 / 16)
    assert rank_fraction(full, 0.01, 4096) == 1.0
    maps = low.reshape(20, 25, 16).permute(0, 2, 1).reshape(20, 16, 5, 5)  # the same rows as positions of maps
    assert rank_fraction(maps, 0.01, 4096) == pytest.approx(3 / 16)
    # negative controls: a constant layer uses no dimension (centring removes it); too few rows cap the rank
    assert rank_fraction(torch.ones(50, 16), 0.01, 4096) == 0.0
    assert rank_fraction(full, 0.01, max_rows=8) <= 8 / 16
    # the threshold-free variant: 1.0 for an isotropic spectrum, ~3/16 for three equal directions
    assert entropy_rank(torch.ones(16), 16) == pytest.approx(1.0)
    assert entropy_rank(torch.tensor([2.0, 2.0, 2.0] + [0.0] * 13), 16) == pytest.approx(3 / 16)
    assert entropy_rank(torch.zeros(16), 16) == 0.0


def test_probe_on_a_model_reports_init_and_ratio() -> None:
    torch.manual_seed(0)
    net = InceptionV1(num_classes=4, width=0.25, batch_norm=False, lrn=False, last_layer="mixed3a").eval()
    with torch.no_grad():  # plant: conv2d1's 16 units copy 2 directions of conv2d0
        w = net.features.conv2d1.conv.weight
        w.copy_((torch.randn(16, 2) @ torch.randn(2, 16)).reshape(16, 16, 1, 1) * 0.01)
        net.features.conv2d1.conv.bias.fill_(5.0)  # all positive: ReLU is linear, rank stays 2
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ps = ProbeSet(images=images, labels=torch.zeros(8, dtype=torch.long), classes=("a",))

    def fresh() -> nn.Module:
        return InceptionV1(num_classes=4, width=0.25, batch_norm=False, lrn=False, last_layer="mixed3a")

    result = EffectiveRank(layers=["conv2d0", "conv2d1"]).run(ProbeContext(net, [], ps, make_model=fresh))
    s = result.scalars
    assert s["conv2d1/fraction"] == pytest.approx(2 / 16)
    assert s["conv2d1/fraction_init"] > 0.5
    assert s["conv2d1/ratio_to_init"] == pytest.approx(s["conv2d1/fraction"] / s["conv2d1/fraction_init"])
    assert s["conv2d0/fraction"] > 0.5  # untouched layer: random weights, many dimensions
    assert s["conv2d1/entropy_fraction"] < 2 / 16 < s["conv2d0/entropy_fraction"]
    no_init = EffectiveRank(layers=["conv2d1"]).run(ProbeContext(net, [], ps))
    assert set(no_init.scalars) == {"conv2d1/fraction", "conv2d1/entropy_fraction"} and "random_init" in no_init.info
    with pytest.raises(ConfigError, match="effective_rank.eps"):
        EffectiveRank(eps=0.0)


def test_any_model_keys_targets_by_module_path_and_reads_channels_last_units() -> None:
    torch.manual_seed(0)
    net = ChannelsLastNet().eval()
    with torch.no_grad():  # plant: fc_a's 12 units span 2 directions of its 6 inputs (channels last: [n, H, W, 12])
        net.fc_a.weight.copy_(torch.randn(12, 2) @ torch.randn(2, 6))
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ps = ProbeSet(images=images, labels=torch.zeros(6, dtype=torch.long), classes=("a",))
    s = EffectiveRank(max_rows=1024).run(ProbeContext(net, [], ps, make_model=ChannelsLastNet)).scalars
    assert {k.rsplit("/", 1)[0] for k in s} == {"stem", "fc_a", "fc_b"}  # the widenable layers, not the head
    assert s["fc_a/fraction"] == pytest.approx(2 / 12)
    assert s["fc_a/fraction_init"] == 0.5 and s["fc_a/ratio_to_init"] == pytest.approx(1 / 3)  # init: 6 inputs
    assert s["stem/fraction"] > 0.5


def test_torchvision_resnet18_smoke(one_thread) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=4).eval()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ps = ProbeSet(images=images, labels=torch.zeros(4, dtype=torch.long), classes=("a",))
    result = EffectiveRank(max_rows=512).run(ProbeContext(net, [], ps, batch_size=2))
    assert [r["target"] for r in result.tables["targets"]] == [f"layer{i}.{j}.conv1" for i in range(1, 5)
                                                                for j in range(2)]  # fmt: skip
    assert 0 < result.scalars["layer2.0.conv1/fraction"] <= 1 and result.tables["targets"][2]["units"] == 128
