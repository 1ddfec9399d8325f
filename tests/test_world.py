"""Tests for the procedural stimulus world: contract, determinism, masks vs pixels, attributes."""

from __future__ import annotations

import math

import pytest
import torch

from harness.data.world import CLASSES, CONCEPTS, World, WorldBatch
from harness.facts.errors import ConfigError

CURVED = ("arc_high", "arc_low", "closed_curve", "wave", "spiral")
C = {name: i for i, name in enumerate(CONCEPTS)}


@pytest.fixture(scope="module")
def batch() -> WorldBatch:
    return World().generate(400, seed=1)


def _of(batch: WorldBatch, name: str) -> torch.Tensor:
    return batch.labels == CLASSES.index(name)


def _same(a: WorldBatch, b: WorldBatch) -> bool:
    attrs = all(torch.equal(a.attrs[k].nan_to_num(-1), b.attrs[k].nan_to_num(-1)) for k in a.attrs)
    masks = (a.masks is None and b.masks is None) or torch.equal(a.masks, b.masks)
    return torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and masks and attrs


def test_shapes_and_dtypes(batch: WorldBatch) -> None:
    assert batch.images.shape == (400, 3, 64, 64) and batch.images.dtype == torch.uint8
    assert batch.labels.shape == (400,) and batch.labels.dtype == torch.int64
    assert batch.masks is not None
    assert batch.masks.shape == (400, len(CONCEPTS), 64, 64) and batch.masks.dtype == torch.bool
    for key in ("curvature", "orientation", "radius", "thickness", "x", "y"):
        assert batch.attrs[key].shape == (400,) and batch.attrs[key].dtype == torch.float32
    assert batch.attrs["stroke_rgb"].shape == batch.attrs["background_rgb"].shape == (400, 3)
    assert len(batch) == 400
    assert World().classes == CLASSES and World().concepts == CONCEPTS


def test_deterministic_per_seed_and_seeds_differ() -> None:
    world = World()
    a, b = world.generate(96, seed=7), world.generate(96, seed=7)
    assert _same(a, b)
    c = world.generate(96, seed=8)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.labels, c.labels)


def test_independent_of_threads_and_of_masks() -> None:
    world = World()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = world.generate(world.chunk + 5, seed=3)  # two chunks
        torch.set_num_threads(2)
        two = world.generate(world.chunk + 5, seed=3)
    finally:
        torch.set_num_threads(before)
    assert _same(one, two)
    no_masks = world.generate(world.chunk + 5, seed=3, with_masks=False)
    assert no_masks.masks is None and torch.equal(no_masks.images, one.images)


def test_does_not_touch_global_rng() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    World().generate(16, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_labels_balanced_and_shuffled(batch: WorldBatch) -> None:
    assert torch.equal(torch.bincount(batch.labels, minlength=8), torch.full((8,), 50))
    assert not torch.equal(batch.labels, torch.arange(400) % 8)
    small = World().generate(5, seed=0)
    assert len(set(small.labels.tolist())) == 5  # every class up to n appears


def test_every_shape_class_draws_a_shape_and_texture_draws_none(batch: WorldBatch) -> None:
    m = batch.masks
    for name in CLASSES[:-1]:
        sel = _of(batch, name)
        assert m[sel, C["shape"]].flatten(1).sum(1).min() >= 10, name
        assert not m[sel, C["texture"]].any(), name
    tex = _of(batch, "texture")
    for concept in ("curve", "line", "corner", "shape"):
        assert not m[tex, C[concept]].any(), concept
    assert m[tex, C["texture"]].all()
    # the texture class is not blank: it carries a strong texture
    assert batch.images[tex].float().std(dim=(2, 3)).mean() > 20


def test_concept_masks_follow_geometry(batch: WorldBatch) -> None:
    m = batch.masks
    straight = _of(batch, "line") | _of(batch, "corner")
    assert not m[straight, C["curve"]].any()
    for name in CURVED:
        assert not m[_of(batch, name), C["line"]].any(), name
        assert m[_of(batch, name), C["curve"]].flatten(1).any(1).all(), name
    assert torch.equal(m[:, C["shape"]], m[:, C["curve"]] | m[:, C["line"]])
    corner = _of(batch, "corner")
    assert m[corner, C["corner"]].flatten(1).any(1).all()
    assert not m[~corner, C["corner"]].any()
    # the corner disc sits on the vertex, where both arms meet
    assert (m[corner, C["corner"]] & m[corner, C["line"]]).flatten(1).any(1).all()


def test_masks_line_up_with_drawn_pixels() -> None:
    world = World(classes=CLASSES[:-1], noise=0.0, min_contrast=0.4)
    b = world.generate(140, seed=2)
    img = b.images.float() / 255
    bg = b.attrs["background_rgb"][:, :, None, None]
    stroke = b.attrs["stroke_rgb"][:, :, None, None]
    # coverage recovered from pixels: how far each pixel moved from background towards stroke
    cov = ((img - bg) * (stroke - bg)).sum(1) / (stroke - bg).square().sum(1)
    drawn = cov >= 0.5
    shape = b.masks[:, C["shape"]]
    inter = (drawn & shape).flatten(1).sum(1).float()
    union = (drawn | shape).flatten(1).sum(1).float()
    assert (inter / union).min() > 0.8
    assert inter.sum() / union.sum() > 0.95
    # far from the stroke the image is exactly the background colour
    far = ~torch.nn.functional.max_pool2d(shape.float()[:, None], 5, 1, 2)[:, 0].bool()
    assert ((img - bg).abs().amax(1)[far] <= 1 / 255 + 1e-6).all()


def test_no_curve_world_has_no_curve_pixels() -> None:
    world = World(classes=["line", "corner", "texture"])
    b = world.generate(120, seed=0)
    assert world.classes == ("line", "corner", "texture")
    assert b.labels.min() >= 0 and b.labels.max() == 2
    assert not b.masks[:, C["curve"]].any()
    assert b.masks[:, C["line"]].any()


def test_curvature_radius_and_orientation_attrs(batch: WorldBatch) -> None:
    curv, radius = batch.attrs["curvature"], batch.attrs["radius"]
    assert curv[_of(batch, "arc_high")].min() > curv[_of(batch, "arc_low")].max()
    assert radius[_of(batch, "arc_high")].max() < radius[_of(batch, "arc_low")].min()
    straight = _of(batch, "line") | _of(batch, "corner")
    assert (curv[straight] == 0).all() and radius[straight].isnan().all()
    tex = _of(batch, "texture")
    assert curv[tex].isnan().all() and batch.attrs["orientation"][tex].isnan().all()
    ori = batch.attrs["orientation"][~tex]
    assert ((ori >= 0) & (ori < 360)).all()
    assert (torch.histc(ori, bins=8, min=0, max=360) > 0).all()  # spread over the circle
    rad = torch.deg2rad(ori)
    assert torch.hypot(rad.cos().mean(), rad.sin().mean()) < 0.2


def test_orientation_is_counter_clockwise_on_screen(batch: WorldBatch) -> None:
    """A line's mask axis, measured with y up, matches its orientation modulo 180 deg."""
    for i in _of(batch, "line").nonzero().squeeze(1)[:20].tolist():
        rows, cols = batch.masks[i, C["line"]].nonzero(as_tuple=True)
        xy = torch.stack([cols.float(), -rows.float()], 1)
        xy = xy - xy.mean(0)
        axis = torch.linalg.eigh(xy.T @ xy).eigenvectors[:, -1]
        measured = math.degrees(math.atan2(axis[1], axis[0])) % 180
        err = abs(measured - float(batch.attrs["orientation"][i]) % 180)
        assert min(err, 180 - err) < 6


def test_shapes_stay_inside_the_image(batch: WorldBatch) -> None:
    shape = batch.masks[:, C["shape"]]
    border = shape[:, 0].any() | shape[:, -1].any() | shape[:, :, 0].any() | shape[:, :, -1].any()
    assert not border


@pytest.mark.parametrize("size", [32, 128])
def test_other_image_sizes(size: int) -> None:
    b = World(image_size=size).generate(24, seed=0)
    assert b.images.shape == (24, 3, size, size) and b.masks.shape == (24, len(CONCEPTS), size, size)
    shaped = b.labels != CLASSES.index("texture")
    assert b.masks[shaped, C["shape"]].flatten(1).any(1).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"classes": ["line", "blob"]}, {"classes": []}, {"classes": ["line", "line"]}],
)
def test_bad_classes_raise_config_error_naming_valid_ones(kwargs: dict) -> None:
    with pytest.raises(ConfigError) as err:
        World(**kwargs)
    for name in CLASSES:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 8}, {"thickness": (3.0, 1.0)}, {"noise": -1.0}, {"min_contrast": 0.8}],
)
def test_bad_knobs_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        World(**kwargs)


def test_zero_images() -> None:
    b = World().generate(0, seed=0)
    assert b.images.shape == (0, 3, 64, 64) and b.labels.shape == (0,) and b.masks.shape[0] == 0
    assert b.attrs["stroke_rgb"].shape == (0, 3)
