"""NORTH's probe: phi with an absolute eps on H / sqrt(n), the trigger as published, and on a hand-built net a narrow
layer that uses every dimension scores above a wide collapsed one; swapping the plant swaps the ranking."""

from __future__ import annotations

import pytest
import torch

from harness.facts.errors import ConfigError
from harness.probes import ProbeContext, ProbeSet
from harness.probes.north import North, effective_dimension, trigger
from tests.helpers import TwoConvNet


def test_effective_dimension_and_trigger_by_hand() -> None:
    assert effective_dimension(torch.eye(4) * 2.0) == 1.0  # sigma(H / sqrt(4)) = 1 > 0.01 for 4 of 4 units
    assert effective_dimension(torch.eye(4) * 1e-3) == 0.0  # eps is absolute: tiny activations use no dimension
    low = torch.randn(400, 1) @ torch.randn(1, 8)  # 8 units on one direction
    assert effective_dimension(low) == pytest.approx(1 / 8)
    assert trigger(1.0, 1.0, 20) == 2 and trigger(0.5, 1.0, 20) == 0  # floor(20 x 0.1); clipped at 0


def _net(collapsed: str) -> TwoConvNet:
    """a: 2 units, b: 8; the ``collapsed`` layer's units all copy one direction (rank 1), the other is random."""
    torch.manual_seed(0)
    net = TwoConvNet(a=2, b=8).eval()
    layer = getattr(net, collapsed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.out_channels, 1, 1, 1) * torch.randn(1, layer.in_channels, 1, 1))
        layer.bias.zero_()
    return net


@pytest.mark.parametrize(("collapsed", "first"), [("b", "a"), ("a", "b")])
def test_narrow_saturated_layer_ranks_first_and_the_swapped_plant_swaps(collapsed: str, first: str) -> None:
    images = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ps = ProbeSet(images=images, labels=torch.zeros(64, dtype=torch.long), classes=("a",))
    s = North().run(ProbeContext(_net(collapsed), [], ps, make_model=lambda: TwoConvNet(a=2, b=8))).scalars
    assert s[f"{first}/score"] > s[f"{collapsed}/score"]
    assert s["a/score"] == pytest.approx(s["a/fraction"] - 0.9 * s["a/fraction_init"])
    if collapsed == "b":  # planted: a uses both of its 2 dimensions, b 1 of 8
        assert s["a/fraction"] == 1.0 and s["b/fraction"] == pytest.approx(1 / 8)


def test_no_init_control_no_score_and_bad_settings_are_one_line() -> None:
    images = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    ps = ProbeSet(images=images, labels=torch.zeros(8, dtype=torch.long), classes=("a",))
    result = North(layers=["a"]).run(ProbeContext(_net("b"), [], ps))
    assert set(result.scalars) == {"a/fraction"} and "random_init" in result.info
    for bad, match in [({"eps": 0}, "north.eps"), ({"gamma": 1.5}, "north.gamma"), ({"max_rows": 1}, "max_rows")]:
        with pytest.raises(ConfigError, match=match):
            North(**bad)
