"""Wiring of widen targets: producers, consumers, channel slices and paths on InceptionV1; other models fail clearly."""

from __future__ import annotations

import pytest
from torch import nn

from harness.errors import ConfigError
from harness.models import InceptionV1, widen_targets
from harness.models.consumers import insert_positions, widen_candidates, wiring


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


def test_other_models_say_they_are_not_wired() -> None:
    with pytest.raises(ConfigError, match="wiring of Sequential is not known"):
        wiring(nn.Sequential(nn.Conv2d(3, 4, 3)), "0")
    with pytest.raises(ConfigError, match="cannot list insert positions"):
        insert_positions(nn.Sequential())
