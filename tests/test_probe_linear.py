"""Linear read-out probe: planted label / curvature / orientation codes are read out, noise and shuffled
labels are not, NaN attributes are excluded, orientation is 180-deg periodic, and the model is untouched."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.probes import ProbeContext, ProbeSet
from harness.probes.linear import Linear

K, CURVE_CENTRES, NOISE = 4, 6, 8  # classes, curvature basis channels, pure-noise channels
SIGNAL = K + 2 + CURVE_CENTRES


class Fake(nn.Module):
    """Two 1x1-conv 'layers': `signal` copies the planted channels, `noise` the channels that carry nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.signal = nn.Conv2d(SIGNAL + NOISE, SIGNAL, 1, bias=False)
        self.noise = nn.Conv2d(SIGNAL + NOISE, NOISE, 1, bias=False)
        with torch.no_grad():
            eye = torch.eye(SIGNAL + NOISE)
            self.signal.weight.copy_(eye[:SIGNAL, :, None, None])
            self.noise.weight.copy_(eye[SIGNAL:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.signal(x).mean((1, 2, 3)) + self.noise(x).mean((1, 2, 3))


def _probe_set(n: int = 320, seed: int = 0) -> ProbeSet:
    """Images whose channels plant one-hot(label), (cos 2t, sin 2t) and a radial code of log curvature."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, K, (n,), generator=g)
    curvature = torch.exp(torch.randn(n, generator=g))
    orientation = torch.rand(n, generator=g) * 360
    missing = torch.rand(n, generator=g) < 0.2  # "texture" images: no curvature, no orientation
    curvature[missing], orientation[missing] = float("nan"), float("nan")
    theta = torch.deg2rad(orientation.nan_to_num(0.0)) * 2  # lines repeat every 180 deg
    centres = torch.linspace(-2.0, 2.0, CURVE_CENTRES)
    curve_code = torch.exp(-((curvature.log().nan_to_num(0.0)[:, None] - centres) ** 2) / 0.5)
    planted = torch.cat([nn.functional.one_hot(labels, K).float(), theta.cos()[:, None], theta.sin()[:, None]], 1)
    planted = torch.cat([planted, curve_code, torch.zeros(n, NOISE)], 1)
    images = planted[:, :, None, None] + 0.2 * torch.randn(n, SIGNAL + NOISE, 4, 4, generator=g)
    attrs = {"curvature": curvature, "orientation": orientation}
    return ProbeSet(images=images, labels=labels, classes=tuple("abcd"), attrs=attrs)


def test_planted_codes_are_read_out_and_noise_is_not() -> None:
    torch.manual_seed(0)
    model = Fake().train()
    state = copy.deepcopy(model.state_dict())
    result = Linear().run(ProbeContext(model, ["signal", "noise"], _probe_set(), seed=3))
    s, chance = result.scalars, result.info["chance"]
    assert s["signal/class_acc"] >= 0.97
    assert s["signal/curvature_acc"] >= 0.85
    assert s["signal/orientation_acc"] >= 0.8  # least-squares read-out errs near the sector edges
    for target in ("class", "curvature", "orientation"):  # negative control: a layer that carries nothing
        assert s[f"noise/{target}_acc"] <= chance[target] + 0.15
        assert 0.2 <= chance[target] <= 0.45
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and model.signal.training


def test_shuffled_labels_read_out_at_chance() -> None:
    probe_set = _probe_set()
    probe_set.labels = probe_set.labels[torch.randperm(len(probe_set), generator=torch.Generator().manual_seed(1))]
    result = Linear().run(ProbeContext(Fake(), ["signal"], probe_set))
    assert result.scalars["signal/class_acc"] <= result.info["chance"]["class"] + 0.12


def test_nan_attributes_are_excluded_and_split_is_seeded() -> None:
    probe_set = _probe_set()
    valid = int((~torch.isnan(probe_set.attrs["curvature"])).sum())
    ctx = ProbeContext(Fake(), ["signal"], probe_set, seed=5)
    first = Linear().run(ctx)
    for target in ("curvature", "orientation"):
        assert sum(first.info["sizes"][target].values()) == valid < len(probe_set)
    assert sum(first.info["sizes"]["class"].values()) == len(probe_set)
    assert Linear().run(ctx).scalars == first.scalars  # deterministic for one seed
    assert len(first.info["curvature_edges"]) == 3


def test_orientation_bins_are_180_periodic() -> None:
    probe_set = _probe_set(n=6)
    probe_set.attrs["orientation"] = torch.tensor([10.0, 190.0, 50.0, 230.0, 170.0, 359.0])
    labels = Linear().targets(ProbeContext(Fake(), ["signal"], probe_set))[0]["orientation"]
    assert labels.tolist() == [0, 0, 1, 1, 3, 3]
    full = Linear(orientation_period=360, orientation_bins=8)
    assert full.targets(ProbeContext(Fake(), ["signal"], probe_set))[0]["orientation"].tolist() == [0, 4, 1, 5, 3, 7]


def test_missing_attributes_are_skipped_and_bad_settings_rejected() -> None:
    probe_set = _probe_set()
    probe_set.attrs = {}
    result = Linear().run(ProbeContext(Fake(), ["signal"], probe_set))
    assert set(result.scalars) == {"signal/class_acc"}
    assert set(result.info["skipped"]) == {"curvature", "orientation"}
    assert math.isfinite(result.scalars["signal/class_acc"])
    with pytest.raises(ConfigError, match="train_fraction"):
        Linear(train_fraction=1.0)
    with pytest.raises(ConfigError, match="ridge"):
        Linear(ridge=[0.0])
