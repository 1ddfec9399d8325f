"""The curves probe finds planted arc detectors, rejects line/random/blob filters, and changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.probes.curve_stimuli import corner_distance, make_stimuli
from harness.probes.curves import CurveCensus, centre_positions
from tests.curve_models import (
    ARC_ANGLES,
    SETTINGS,
    SIZE,
    K,
    OneConv,
    census_context,
    planted_net,
    random_net,
    stroke_ink,
    threshold_detector,
)


@pytest.fixture(scope="module")
def planted() -> tuple[OneConv, object, dict]:
    torch.manual_seed(0)
    net = planted_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ctx = census_context(make_model=random_net, model=net)
    return net, CurveCensus(**SETTINGS).run(ctx), before


def test_stimulus_convention_and_polarity() -> None:
    stim = make_stimuli(SIZE, 36, [0.2 * SIZE], span=120.0, stroke=2.0)
    assert stim.images.shape == (2 * 36 + 2 * 18, 3, SIZE, SIZE) and stim.n_arcs == 72
    assert stim.line_orientations.tolist() == [10.0 * k for k in range(18)]
    dark, light = stim.images[0, 0], stim.images[36, 0]  # orientation 0 in both polarities
    assert (
        dark.min() == 0.0 and dark.max() == 0.5 and light.max() == 1.0 and torch.allclose(dark + light, torch.ones(1))
    )
    ink = 0.5 - dark  # a 0-deg arc bulges to +x: it passes through the centre and its ends lie to the left
    cols = torch.arange(SIZE, dtype=torch.float32)
    assert (ink.sum(0) * cols).sum() / ink.sum() < (SIZE - 1) / 2 - 1
    ink90 = 0.5 - stim.images[9, 0]  # 90 deg bulges up (y up): ends lie below the centre, i.e. larger rows
    assert (ink90.sum(1) * cols).sum() / ink90.sum() > (SIZE - 1) / 2 + 1
    c = (SIZE - 1) / 2  # the stroke passes through the centre (the 4 centre pixels are inked)
    assert ink[math.floor(c) : math.ceil(c) + 1, math.floor(c) : math.ceil(c) + 1].min() > 0.2


def test_planted_arc_detectors_found(planted) -> None:
    _, result, _ = planted
    rows = {r["unit"]: r for r in result.tables["units"] if r["layer"] == "curve_layer"}
    for unit, angle in enumerate(ARC_ANGLES):
        row = rows[unit]
        assert row["is_curve_detector"], row
        diff = abs((row["preferred_orientation"] - angle + 180) % 360 - 180)
        assert diff <= 5.0, (unit, row["preferred_orientation"])  # within the 5-degree orientation step
        assert row["preferred_radius"] == pytest.approx(0.2 * SIZE) and row["curve_over_line"] >= 2
    assert result.scalars["curve_layer/detectors"] == 4.0
    assert result.scalars["curve_layer/orientation_coverage"] == 4 / 8
    assert result.info["curve_cluster_layer"] == "curve_layer"


def test_lines_random_and_blob_filters_rejected(planted) -> None:
    _, result, _ = planted
    rows = {r["unit"]: r for r in result.tables["units"]}
    assert not any(rows[u]["is_curve_detector"] for u in range(4, 12))
    assert all(rows[u]["curve_over_line"] < 1.0 for u in range(4, 8))  # line detectors prefer lines
    assert result.scalars["curve_layer/detectors_random_init"] == 0.0  # control: random filters
    assert "skipped_layers" not in result.info
    image = result.images["tuning"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.std() > 0


def test_changes_nothing_and_is_deterministic(planted) -> None:
    net, result, before = planted
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert all(p.grad is None for p in net.parameters())
    again = CurveCensus(**SETTINGS).run(census_context(make_model=random_net, model=net))
    assert again.tables == result.tables and again.scalars == result.scalars


def test_no_make_model_skips_control_and_non_spatial_layers() -> None:
    result = CurveCensus(layers=["curve_layer", "pooled"], random_init=True, **SETTINGS).run(census_context())
    assert "curve_layer/detectors_random_init" not in result.scalars and "make_model" in result.info["random_init"]
    assert result.info["skipped_layers"] == ["pooled"] and "curve_layer/detectors" in result.scalars
    with pytest.raises(ConfigError, match="conv feature maps"):
        CurveCensus(layers=["pooled"], **SETTINGS).run(census_context())
    with pytest.raises(ConfigError, match="orientations"):
        CurveCensus(orientations=12)


def test_centre_position_follows_same_padding() -> None:
    """TF-SAME padding puts index H//2's receptive field half a stride past the centre: index H//2 - 1 is read."""
    torch.manual_seed(0)
    net = InceptionV1(num_classes=3, width=0.125, batch_norm=True, last_layer="mixed3b")
    pos = centre_positions(net, ["conv2d2", "mixed3a"], 64, torch.device("cpu"))
    assert pos["conv2d2"][:2] == (7, 7) and pos["mixed3a"][:2] == (3, 3)  # 16x16 and 8x8 maps, centred on px 31
    assert all(not m._forward_hooks for m in net.modules())


CORNER_RADII = (0.05, 0.1, 0.2, 0.3, 0.4)  # 1.65 ... 13.2 px: the planted corner units prefer 3.3 px, a middle radius


def _planted_corners() -> OneConv:
    """Units 0-3: the planted arc detectors of `planted_net`; 4-7: corner detectors at 0/90/180/270 deg (a 90-degree
    corner with 9.9 px arms, pooled over +-20 deg, thresholded at 45% of its own corner). Such a unit answers a
    120-degree arc (a bend) and no straight line at all: arcs against lines alone call it a curve detector."""
    arcs = planted_net().curve_layer.conv
    centre, arm = ((K - 1) / 2, (K - 1) / 2), torch.tensor([9.9])
    weight, bias = arcs.weight.detach(), arcs.bias.detach()
    kernels, biases = [weight[u, 0] * 3 for u in range(4)], [float(bias[u]) for u in range(4)]
    for angle in ARC_ANGLES:
        spread = torch.deg2rad(angle + torch.linspace(-20, 20, 5))
        pooled = stroke_ink(corner_distance(K, spread, 90.0, arm, centre)[:, 0]).mean(0)
        own = stroke_ink(corner_distance(K, torch.deg2rad(torch.tensor([angle])), 90.0, arm, centre)[0, 0])
        kernel, bias = threshold_detector(pooled, own, threshold=0.45)
        kernels.append(kernel)
        biases.append(bias)
    return OneConv(torch.stack(kernels).detach(), torch.tensor(biases))


def test_corner_stimulus_vertex_at_centre_and_bisector_toward_theta() -> None:
    stim = make_stimuli(SIZE, 36, [0.2 * SIZE], span=120.0, stroke=2.0, corner_angles=[90.0])
    assert stim.n_corners == 2 * 18 and len(stim.images) == stim.n_arcs + stim.n_lines + stim.n_corners
    assert stim.corner_orientations.tolist() == [20.0 * k for k in range(18)]  # every second arc orientation
    ink = 0.5 - stim.images[stim.n_arcs + stim.n_lines, 0]  # dark 90-degree corner, bisector at 0 deg (+x)
    cols = torch.arange(SIZE, dtype=torch.float32)
    assert (ink.sum(0) * cols).sum() / ink.sum() < (SIZE - 1) / 2 - 1  # the arms open away from +x
    c = (SIZE - 1) / 2
    assert ink[math.floor(c) : math.ceil(c) + 1, math.floor(c) : math.ceil(c) + 1].min() > 0.2  # vertex inked
    arm = 2 * 0.2 * SIZE * math.sin(math.radians(30))  # as long as the arc's apex-to-end distance
    assert ink[:, : math.floor(c - arm * math.cos(math.radians(45))) - 2].max() == 0.0


def test_planted_corner_detectors_are_not_curve_detectors() -> None:
    ctx = census_context(model=_planted_corners())
    without = CurveCensus(radii=CORNER_RADII, random_init=False, min_curve_over_corner=0.0).run(ctx)
    rows = {r["unit"]: r for r in without.tables["units"]}
    # Negative control of the test itself: without the corner criterion the corner units pass every other test.
    assert all(rows[u]["is_curve_detector"] and rows[u]["curve_over_line"] == 1000.0 for u in range(4, 8)), rows
    default = CurveCensus(radii=CORNER_RADII, random_init=False).run(ctx)
    rows = {r["unit"]: r for r in default.tables["units"]}
    assert [rows[u]["is_curve_detector"] for u in range(8)] == [True] * 4 + [False] * 4
    assert all(rows[u]["curve_over_corner"] >= 2.0 for u in range(4))  # arcs beat every sharp corner
    assert all(rows[u]["curve_over_corner"] < 0.5 for u in range(4, 8))  # corners beat arcs
    assert default.scalars["curve_layer/detectors"] == 4.0


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        (dict(min_curve_over_corner=-0.5), "probes.curves.min_curve_over_corner must be >= 0"),
        (dict(corner_angles=[]), "probes.curves.corner_angles"),
        (dict(corner_angles=[90.0, 180.0]), "probes.curves.corner_angles"),
        (dict(corner_angles=["sharp"]), "probes.curves.corner_angles"),
    ],
)
def test_bad_corner_settings_name_the_key(settings, key) -> None:
    with pytest.raises(ConfigError, match=key):
        CurveCensus(**settings)


def test_tuning_plot_has_a_legend() -> None:
    from harness.probes.curves import tuning_plot

    class Stim:
        orientations = torch.arange(0, 360, 15.0)
        line_orientations = torch.arange(0, 180, 15.0)

    rng = np.random.default_rng(0)
    stats = {"mixed3b": {"selectivity": np.array([3.0]), "detector": np.array([True]), "peak": np.array([1.0]),
                         "line_tuning": rng.random((12, 1)), "tuning": rng.random((24, 1)),
                         "preferred_radius": np.array([5.0])}}  # fmt: skip
    img = tuning_plot(stats, Stim())
    strip = img[-12:].reshape(-1, 3).astype(int)
    blue = ((strip[:, 2] > 150) & (strip[:, 0] < 80)).sum()
    orange = ((strip[:, 0] > 200) & (strip[:, 2] < 60)).sum()
    assert blue > 10 and orange > 10  # the key to both lines sits in the bottom strip
