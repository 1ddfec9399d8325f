"""The oracle's first-order signals (``tiny``, ``gradmax_per_unit``): on a hand-built base where only one layer can
see the label's evidence, both rank it first; with the labels shuffled (the plant removed) its scores fall to noise."""

from __future__ import annotations

import pytest
import torch

from harness.oracle.candidates import Candidate
from harness.oracle.first_order import GRADMAX_PER_UNIT, TINY, first_order_signals, per_unit
from tests.helpers import TwoConvNet

N = 512
CANDIDATES = [Candidate("a", "widen", "a", 2), Candidate("b", "widen", "b", 2)]


def _planted() -> tuple[TwoConvNet, torch.Tensor, torch.Tensor]:
    """``a`` is blind to the blue channel, which alone carries the label; ``b`` outputs a constant and the logits
    are 0 (p = 1/2 everywhere): units at ``a`` can read blue, units at ``b`` only read ``a``'s blind outputs."""
    torch.manual_seed(0)
    net = TwoConvNet(a=4, b=4).eval()
    with torch.no_grad():
        net.a.weight[:, 2] = 0.0
        net.b.weight.zero_()
        net.b.bias.fill_(1.0)
        net.head.bias.copy_(-net.head.weight.sum(1))
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(N) % 2
    x = torch.randn(N, 3, 4, 4, generator=gen)
    x[:, 2] = (2.0 * y - 1.0).view(N, 1, 1) + 0.1 * x[:, 2]
    return net, x, y


def test_planted_layer_ranks_first_and_shuffled_labels_remove_it() -> None:
    net, x, y = _planted()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = first_order_signals(net, [(x[:256], y[:256]), (x[256:], y[256:])], CANDIDATES, image_size=4)
    assert s[TINY]["a"] > 100 * s[TINY]["b"] and s[GRADMAX_PER_UNIT]["a"] > 50 * s[GRADMAX_PER_UNIT]["b"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing written
    shuffled = y[torch.randperm(N, generator=torch.Generator().manual_seed(2))]  # negative control
    c = first_order_signals(net, [(x, shuffled)], CANDIDATES, image_size=4)
    assert c[TINY]["a"] < s[TINY]["a"] / 20 and c[GRADMAX_PER_UNIT]["a"] < s[GRADMAX_PER_UNIT]["a"] / 5


def test_per_unit_divides_by_the_candidates_units_beyond_the_rank_too() -> None:
    assert per_unit(torch.tensor([3.0, 1.0]), 1) == 3.0 and per_unit(torch.tensor([3.0, 1.0]), 4) == 1.0
    net, x, y = _planted()
    one = first_order_signals(net, [(x, y)], [Candidate("a", "widen", "a", 1)], image_size=4)
    many = first_order_signals(net, [(x, y)], [Candidate("a", "widen", "a", 8)], image_size=4)  # a's fan-in: 3
    assert many[GRADMAX_PER_UNIT]["a"] < one[GRADMAX_PER_UNIT]["a"] and many[TINY]["a"] < one[TINY]["a"]
    assert first_order_signals(net, [(x, y)], [Candidate("insert_x", "insert", "x", 1)], 4) == {}


@pytest.mark.parametrize("signal", [TINY, GRADMAX_PER_UNIT])
def test_signals_are_deterministic(signal: str) -> None:
    net, x, y = _planted()
    assert first_order_signals(net, [(x, y)], CANDIDATES, 4)[signal] == first_order_signals(net, [(x, y)],
                                                                                           CANDIDATES, 4)[signal]
