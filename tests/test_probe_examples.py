"""Dataset examples: a unit that fires only on red patches (class 2) has its top-k all from class 2, a green
unit all from class 3; a constant unit (the control) keeps probe-set order. Unit selection, errors, the
image grid. Model untouched, no hooks left, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.facts.errors import ConfigError
from harness.probes import ProbeContext, ProbeSet
from harness.probes.examples import TopExamples
from harness.probes.plots import image_grid
from tests.helpers import OneLayerNet

SIZE, PER_CLASS, CLASSES = 16, 10, ("a", "b", "red", "green")


def patch_net() -> OneLayerNet:
    """layer (1x1 conv): unit 0 = relu(R - G - B - 0.5), unit 1 = relu(G - R - B - 0.5), unit 2 = 1 (constant)."""
    weight = [[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [0.0, 0.0, 0.0]]
    return OneLayerNet(weight, bias=[-0.5, -0.5, 1.0], classes=4)


def make_ctx(widen: dict[str, int] | None = None) -> ProbeContext:
    """Grey noisy images (R - G - B < 0 everywhere); class 'red' gets a red patch, class 'green' a green one,
    at a random place. Classes are interleaved so probe-set order is not class order."""
    torch.manual_seed(0)
    n = PER_CLASS * len(CLASSES)
    labels = torch.arange(n) % len(CLASSES)
    images = 0.35 + 0.3 * torch.rand(n, 3, SIZE, SIZE)
    colours = {2: torch.tensor([1.0, 0.0, 0.0]), 3: torch.tensor([0.0, 1.0, 0.0])}
    for i, label in enumerate(labels.tolist()):
        if label in colours:
            y, x = torch.randint(0, SIZE - 4, (2,)).tolist()
            brightness = 0.5 + 0.5 * torch.rand(1)
            images[i, :, y : y + 4, x : x + 4] = (colours[label] * brightness)[:, None, None]
    probe_set = ProbeSet(images=images, labels=labels, classes=CLASSES)
    return ProbeContext(patch_net(), ["layer"], probe_set, widen=widen or {}, batch_size=16)


def test_planted_units_pick_their_class() -> None:
    ctx = make_ctx()
    ctx.model.train()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    result = TopExamples(units=["layer:0", "layer:1", "layer:2"], k=8).run(ctx)
    rows = {r["unit"]: r for r in result.tables["units"]}
    labels = ctx.probe_set.labels
    top = {u: [int(i) for i in rows[u]["top_indices"].split(",")] for u in rows}
    assert [CLASSES[labels[i]] for i in top[0]] == ["red"] * 8
    assert [CLASSES[labels[i]] for i in top[1]] == ["green"] * 8
    assert rows[0]["top_classes"] == ",".join(["red"] * 8)
    values = [float(v) for v in rows[0]["top_values"].split(",")]
    assert values == sorted(values, reverse=True) and values[-1] > 0
    assert top[2] == list(range(8))  # control: a constant unit ties everywhere and keeps probe-set order
    grid = result.images["layer"]
    assert grid.dtype == np.uint8 and grid.shape == (3 * (SIZE + 12 + 2) + 2, 8 * (SIZE + 2) + 2, 3)
    assert {type(v) for r in result.tables["units"] for v in r.values()} <= {str, int, float, bool}
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert all(m.training for m in ctx.model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in ctx.model.modules())


def test_unit_selection() -> None:
    added = TopExamples().run(make_ctx(widen={"layer": 1})).tables["units"]
    assert [(r["layer"], r["unit"]) for r in added] == [("layer", 2)]  # the widen-added unit alone
    both = TopExamples(units=["layer:1", "layer:2"]).run(make_ctx(widen={"layer": 1})).tables["units"]
    assert [r["unit"] for r in both] == [1, 2]  # named first, duplicates dropped
    default = TopExamples(k=3).run(make_ctx()).tables["units"]
    assert [r["unit"] for r in default] == [0, 1, 2]  # first 8 units of the last layer, as many as exist
    assert all(len(r["top_indices"].split(",")) == 3 for r in default)


def test_bad_units_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown layer 'mixed9z'; valid: layer"):
        TopExamples(units=["mixed9z:3"]).run(make_ctx())
    with pytest.raises(ConfigError, match="out of range"):
        TopExamples(units=["layer:7"]).run(make_ctx())
    with pytest.raises(ConfigError, match="layer:index"):
        TopExamples(units=["layer"])
    with pytest.raises(ConfigError, match="k must be"):
        TopExamples(k=0)


def test_image_grid_layout_and_labels() -> None:
    tiles = torch.zeros(3, 3, 4, 4)
    tiles[1, 0] = 1.0
    grid = image_grid(tiles, nrow=2, pad=1)
    assert grid.shape == (11, 11, 3) and grid[1, 6].tolist() == [255, 0, 0] and grid[0, 0].tolist() == [255] * 3
    big = torch.full((2, 1, 20, 40), 0.5)  # greyscale is expanded to RGB
    labelled = image_grid(big, nrow=2, labels=["12 3.4", ""], pad=2)
    assert labelled.shape == (2 + 12 + 20 + 2, 2 + 2 * (40 + 2), 3)
    caption, empty = labelled[2:14, 2:42], labelled[2:14, 44:84]
    assert caption.min() < 128 and empty.min() == 255  # text drawn only where a label was given
    assert (labelled[14:34, 2:42] == 128).all()  # the caption does not cover the image
    with pytest.raises(ValueError, match="labels"):
        image_grid(big, nrow=2, labels=["one"])
