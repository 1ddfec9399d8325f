"""Feature visualisation: a unit that is a matched filter for red (R minus the others) gets a red image with a
much larger activation than at the start; a green unit is the control. Model untouched, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.probes import ProbeContext, ProbeSet
from harness.probes.featvis import FeatVisProbe, pre_relu_target, visualise
from tests.helpers import OneLayerNet

SIZE, STEPS = 24, 48


pytestmark = pytest.mark.usefixtures("one_thread")


def colour_net() -> OneLayerNet:
    """layer (3x3 conv): unit 0 = red - (green + blue) / 2, unit 1 = green - (red + blue) / 2, bias 0.5."""
    return OneLayerNet([[1.0, -0.5, -0.5], [-0.5, 1.0, -0.5]], bias=0.5, kernel=3, classes=2)


def make_ctx(seed: int = 0) -> ProbeContext:
    torch.manual_seed(0)
    probe_set = ProbeSet(images=torch.rand(4, 3, SIZE, SIZE), labels=torch.zeros(4, dtype=torch.long), classes=("a",))
    return ProbeContext(colour_net(), ["layer"], probe_set, seed=seed)


def probe(**kwargs) -> FeatVisProbe:
    return FeatVisProbe(steps=STEPS, top_curve_detectors=0, pad=2, jitter=2, **kwargs)


def test_matched_filter_gets_its_colour() -> None:
    ctx = make_ctx()
    ctx.model.train()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    flags = [p.requires_grad for p in ctx.model.parameters()]
    result = probe(units=["layer:0", "layer:1"]).run(ctx)
    rows = {r["unit"]: r for r in result.tables["units"]}
    for unit in (0, 1):
        assert rows[unit]["final_activation"] > 5 * rows[unit]["start_activation"] > 0
    # Dominant colour of each tile's central region: red for unit 0, green for unit 1 (the control).
    grid = result.images["layer"]
    caption = grid.shape[0] - SIZE - 4  # image_grid draws a label strip above each tile
    assert grid.dtype == np.uint8 and grid.shape[1:] == (2 * SIZE + 6, 3) and caption >= 0
    for unit, colour in ((0, 0), (1, 1)):
        y0, x0 = 2 + caption, 2 + unit * (SIZE + 2)
        centre = grid[y0 + SIZE // 4 : y0 + 3 * SIZE // 4, x0 + SIZE // 4 : x0 + 3 * SIZE // 4].reshape(-1, 3).mean(0)
        assert centre.argmax() == colour and centre[colour] > centre.min() + 30
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert all(p.grad is None for p in ctx.model.parameters())
    assert [p.requires_grad for p in ctx.model.parameters()] == flags
    assert all(m.training for m in ctx.model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in ctx.model.modules())


def test_deterministic_per_seed() -> None:
    a = visualise(colour_net(), [("layer", 0)], SIZE, steps=8, seed=1)
    b = visualise(colour_net(), [("layer", 0)], SIZE, steps=8, seed=1)
    c = visualise(colour_net(), [("layer", 0)], SIZE, steps=8, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_default_selection_and_added_units() -> None:
    ctx = make_ctx()
    rows = FeatVisProbe(steps=1, top_curve_detectors=0, default_units=8).run(ctx).tables["units"]
    assert [(r["layer"], r["unit"]) for r in rows] == [("layer", 0), ("layer", 1)]  # capped at the layer's width
    ctx.widen = {"layer": 1}
    rows = FeatVisProbe(steps=1, top_curve_detectors=0).run(ctx).tables["units"]
    assert [(r["layer"], r["unit"]) for r in rows] == [("layer", 1)]


def test_concat_units_map_to_their_branch() -> None:
    channels = {"m": 10, "m_1x1": 2, "m_3x3": 3, "m_5x5": 4, "m_pool_reduce": 1, "m_3x3_bottleneck": 5}
    assert pre_relu_target(channels, "m", 0) == ("m_1x1", 0)
    assert pre_relu_target(channels, "m", 4) == ("m_3x3", 2)
    assert pre_relu_target(channels, "m", 9) == ("m_pool_reduce", 0)
    assert pre_relu_target(channels, "m_5x5", 3) == ("m_5x5", 3)


@pytest.mark.parametrize("kwargs", [{"steps": -1}, {"max_units": 0}, {"lr": 0}])
def test_bad_settings(kwargs: dict) -> None:
    from harness.facts.errors import ConfigError

    with pytest.raises(ConfigError):
        FeatVisProbe(**kwargs)


def test_canvas_is_capped_for_large_probe_images() -> None:
    """Large probe images are optimised on a max_image_size canvas (the info says so); small ones, and an explicit
    image_size, are not touched (the control)."""
    info: dict = {}
    assert probe().canvas(224, info) == 128 and "128 px" in info["canvas"]
    info = {}
    assert probe().canvas(64, info) == 64 and info == {}
    assert probe(max_image_size=None).canvas(224, {}) == 224
    assert probe(image_size=200).canvas(224, {}) == 200
    torch.manual_seed(0)
    images = torch.rand(2, 3, 40, 40)
    ctx = ProbeContext(colour_net(), ["layer"], ProbeSet(images=images, labels=torch.zeros(2, dtype=torch.long),
                                                         classes=("a",)), seed=0)
    result = probe(units=["layer:0"], max_image_size=SIZE).run(ctx)
    grid = result.images["layer"]
    assert grid.shape[1] == SIZE + 4 and "24 px" in result.info["canvas"]
