"""Activation statistics: planted dead units (weight 0, bias -1) are counted exactly; a layer whose units
are all always on reports none (the control). Model untouched, no hooks left, seeded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.models import ConvReLU
from harness.probes import ProbeContext, ProbeSet
from harness.probes.activations import ActivationStats, upper_quantile

DEAD = [1, 4, 5]


class DeadNet(nn.Module):
    """first: 8 units, those in DEAD have weight 0 and bias -1 (always off), the rest non-negative weights and
    bias 0.1 on images in [0, 1] (always on); second: 4 units, all always on (non-negative weights, bias 0.1)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = ConvReLU(3, 8, 3)
        self.second = ConvReLU(8, 4, 1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            for unit in (self.first, self.second):
                unit.conv.weight.abs_()
                unit.conv.bias.fill_(0.1)
            self.first.conv.weight[DEAD] = 0.0
            self.first.conv.bias[DEAD] = -1.0

    def hook_points(self) -> dict[str, nn.Module]:
        return {"first": self.first, "second": self.second}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.second(self.first(x)).mean(dim=(2, 3)))


def make_ctx() -> ProbeContext:
    torch.manual_seed(0)
    images = torch.rand(24, 3, 16, 16)
    probe_set = ProbeSet(images=images, labels=torch.zeros(24, dtype=torch.long), classes=("a",))
    return ProbeContext(DeadNet(), ["first", "second"], probe_set, batch_size=10)


def test_planted_dead_units_are_counted_exactly() -> None:
    ctx = make_ctx()
    ctx.model.train()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    result = ActivationStats().run(ctx)
    s = result.scalars
    assert s["first/dead_fraction"] == pytest.approx(3 / 8)
    assert s["second/dead_fraction"] == 0.0  # control: no dead units
    # the live units are positive everywhere, so the zeros are exactly the dead units' positions
    assert s["first/sparsity"] == pytest.approx(3 / 8) and s["second/sparsity"] == pytest.approx(0.0)
    rows = [r for r in result.tables["units"] if r["layer"] == "first"]
    assert [r["unit"] for r in rows if r["dead"]] == DEAD
    assert all(r["frac_active"] == 1.0 and r["max"] > 0 for r in rows if not r["dead"])
    assert all(r["frac_active"] == 0.0 and r["max"] == 0.0 and r["mean"] == 0.0 for r in rows if r["dead"])
    assert {type(v) for r in result.tables["units"] for v in r.values()} <= {str, int, float, bool}
    # nothing changed: weights, train mode, hooks
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert all(m.training for m in ctx.model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in ctx.model.modules())


def test_scale_matches_a_direct_computation() -> None:
    ctx = make_ctx()
    acts = ctx.activations()["second"]
    s = ActivationStats(layers=["second"]).run(ctx).scalars
    assert set(s) == {"second/dead_fraction", "second/sparsity", "second/mean_activation", "second/p99_activation"}
    assert s["second/mean_activation"] == pytest.approx(float(acts.mean()), rel=1e-5)
    assert s["second/p99_activation"] == pytest.approx(float(torch.quantile(acts.flatten(), 0.99)), rel=1e-5)
    assert s["second/p99_activation"] > s["second/mean_activation"] > 0


@pytest.mark.parametrize("q", [0.0, 0.3, 0.99, 0.995, 1.0])
def test_upper_quantile_matches_torch(q: float) -> None:
    rows = torch.randn(5, 1001, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(upper_quantile(rows, q), torch.quantile(rows, q, dim=1), atol=1e-6)


def test_bad_quantile() -> None:
    with pytest.raises(ValueError, match="quantile"):
        ActivationStats(quantile=1.5)
