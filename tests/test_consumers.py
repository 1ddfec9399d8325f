"""Wiring of widen targets: producers, consumers, channel slices and paths on InceptionV1, and on any other model
from its traced graph (the targets model.widen accepts); refused targets say why."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from harness.facts.edits import widen_targets
from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.models.consumers import growth_facts, insert_positions, widen_candidates, widenable, wiring, wirings
from harness.models.graph_widen import widen_modules
from tests.helpers import TinyResNet


def test_inception_wiring() -> None:
    net = InceptionV1(num_classes=3, width=0.25, lrn=True, insert=["mixed3b"], last_layer="mixed4a")
    f = net.features
    assert widen_candidates(net) == widen_targets(["mixed3b"], "mixed4a")
    assert insert_positions(net) == ["mixed3a", "mixed3b", "mixed3b_ins1", "mixed4a"]

    stem = wiring(net, "conv2d0")
    assert stem.producer is f.conv2d0.conv and [c.module for c in stem.consumers] == [f.conv2d1.conv]
    assert stem.consumers[0].path == (f.maxpool0, f.localresponsenorm0) and stem.consumers[0].channels == slice(0, 16)

    bottleneck = wiring(net, "mixed3a_5x5_bottleneck").consumers
    assert [(c.module, c.path) for c in bottleneck] == [(f.mixed3a.conv_5x5.conv, ())]

    w = net.plan.blocks[2].widths  # mixed3b_ins1 -> maxpool4 -> mixed4a; the pool branch also through its pool
    pool = wiring(net, "mixed3b_ins1_pool_reduce").consumers
    start = w["1x1"] + w["3x3"] + w["5x5"]
    assert all(c.channels == slice(start, start + w["pool_reduce"]) for c in pool)
    assert [c.path for c in pool] == [(f.maxpool4,)] * 3 + [(f.maxpool4, f.mixed4a.pool)]
    assert pool[3].module is f.mixed4a.pool_reduce.conv

    head = wiring(net, "mixed4a_3x3").consumers
    assert [(c.module, c.path) for c in head] == [(net.fc, (net.avgpool, net.dropout))]
    with pytest.raises(ConfigError, match="unknown widen target 'mixed4b_1x1'; valid: conv2d0"):
        wiring(net, "mixed4b_1x1")


def test_any_model_is_wired_from_its_traced_graph() -> None:
    from harness.models.consumers import Op

    net = TinyResNet()
    assert widen_candidates(net, image_size=32) == ["block.conv1", "conv3", "fc1"]  # not stem/conv2 (residual), fc2
    block, conv3, fc1 = wirings(net, image_size=32)
    assert block.producer is net.block.conv1 and [c.module for c in block.consumers] == [net.block.conv2]
    assert block.consumers[0].path == (net.block.bn1, net.act) and block.consumers[0].channels == slice(0, 6)
    (head,) = conv3.consumers  # ReLU (a function), the 2x2 pool, flatten: each of 5 units is read at 4 columns
    assert head.module is net.fc1 and head.channels == slice(0, 20)
    assert [getattr(s, "name", type(s).__name__) for s in head.path] == ["relu", "AdaptiveAvgPool2d", "flatten"]
    assert isinstance(head.path[0], Op) and head.path[2].args == (1,)
    assert [c.module for c in fc1.consumers] == [net.fc2]
    with pytest.raises(ConfigError, match=r"model\.widen\.block\.conv2: .*residual add"):
        wiring(net, "block.conv2")
    with pytest.raises(ConfigError, match="model's output"):
        wiring(nn.Sequential(nn.Conv2d(3, 4, 3)), "0")
    with pytest.raises(ConfigError, match="unknown widen target 'nope'; valid: block.conv1, conv3, fc1"):
        wiring(net, "nope")
    with pytest.raises(ConfigError, match="cannot list insert positions"):
        insert_positions(nn.Sequential())


def test_widenable_targets_and_where_to_grow_a_probe_layer() -> None:
    """One planner: the targets are what model.widen accepts; a probe layer grows at the widest target inside it,
    else at the nearest one feeding it."""
    resnet = torchvision.models.resnet18(num_classes=5)
    found = widenable(resnet)
    assert list(found.plans) == [f"layer{i}.{j}.conv1" for i in range(1, 5) for j in range(2)]
    assert "residual add" in found.refused["layer2.0.conv2"] and "model's output" in found.refused["fc"]
    assert found.grow_at("layer2.0") == "layer2.0.conv1" and found.grow_at("layer3") == "layer3.0.conv1"
    assert found.grow_at("conv1") is None  # the stem writes the residual stream
    vgg = widenable(torchvision.models.vgg11_bn(num_classes=5))
    assert vgg.grow_at("features.2") == "features.0" and vgg.grow_at("features.27") == "features.25"  # ReLUs
    resnet.eval()  # listed targets widen, keeping the function; a refused one is refused by model.widen
    wide = widen_modules(resnet, {"layer1.0.conv1": 2, "layer4.1.conv1": 2}, image_size=32).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (wide(x) - resnet(x)).abs().max() <= 1e-5 and wide.layer4[1].conv1.out_channels == 514
    with pytest.raises(ConfigError, match="residual add"):
        widen_modules(resnet, {"layer2.0.conv2": 1})


def test_growth_facts_for_a_run_record_and_an_untraceable_model() -> None:
    facts = growth_facts(TinyResNet(), ["block", "pool", "conv3:2"], image_size=32)
    assert facts == {"widen_targets": {"block.conv1": 6, "conv3": 5, "fc1": 7},
                     "grow_at": {"block": "block.conv1", "pool": "conv3", "conv3": "conv3"}}  # fmt: skip

    class Branchy(nn.Module):  # control flow on a tensor's value: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) if x.sum() > 0 else x

    untraced = growth_facts(Branchy(), ["conv"])
    assert untraced["widen_targets"] == {} and "torch.fx can trace; Branchy is not" in untraced["widen_error"]
