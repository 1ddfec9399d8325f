"""The curves probe's two speed-ups change no verdict: stimuli cropped to the receptive field give the census of
full images (planted detectors and a random-init InceptionV1), a window that cuts the field is refused, and the
random-init census is read back from the cache only for the same architecture and weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.probes import ProbeContext, ProbeSet, control_cache
from harness.probes.curve_crop import Crop, plan_crop, verify
from harness.probes.curves import CurveCensus, centre_positions, geometric_copy
from tests.curve_models import SETTINGS, SIZE, OneConv, census_context, planted_net, random_net

pytestmark = pytest.mark.usefixtures("one_thread")
FIELDS = ("preferred_orientation", "preferred_radius", "selectivity", "circular_variance", "curve_over_line",
          "half_max_width", "peak")  # fmt: skip


def same_census(a, b, rtol: float = 1e-4) -> None:
    """Same detectors and, unit by unit, the same tuning statistics to float rounding."""
    assert {k: v for k, v in a.scalars.items()} == {k: v for k, v in b.scalars.items()}
    rows_a, rows_b = a.tables["units"], b.tables["units"]
    assert [(r["layer"], r["unit"], r["is_curve_detector"]) for r in rows_a] == [
        (r["layer"], r["unit"], r["is_curve_detector"]) for r in rows_b
    ]
    for ra, rb in zip(rows_a, rows_b):
        for key in FIELDS:
            assert ra[key] == pytest.approx(rb[key], rel=rtol, abs=1e-6), (ra["layer"], ra["unit"], key)


def test_cropped_census_equals_full_census_on_planted_detectors() -> None:
    cropped = CurveCensus(**SETTINGS, random_init=False).run(census_context())
    full = CurveCensus(**SETTINGS, random_init=False, crop=False).run(census_context())
    assert "rows 9:24, cols 9:24 (15 x 15 of 33 x 33 px" in cropped.info["crop"]  # the 15 px kernel's field
    assert full.info["crop"] == "full images (crop disabled)"
    assert cropped.scalars["curve_layer/detectors"] == 4.0  # the four planted arc detectors, as on full images
    same_census(cropped, full)


def test_window_that_cuts_the_field_is_refused_and_would_change_the_census() -> None:
    """Negative control: 3 px less on every side than the field. The check refuses it, and the census it would
    give differs from the full images' (so the equality above is not trivially true)."""
    net, device = planted_net(), torch.device("cpu")
    probe = CurveCensus(**SETTINGS, random_init=False)
    positions = centre_positions(net, ["curve_layer"], SIZE, device)
    (i, j, off) = positions["curve_layer"]
    small = Crop(12, 21, 12, 21, {"curve_layer": (i - 12, j - 12, off)})
    check = probe.check_images(SIZE, 0)
    assert not verify(net, small, positions, check, device)
    good = plan_crop(net, geometric_copy(net), positions, SIZE, check, device)
    assert good is not None and good.shape == (15, 15) and verify(net, good, positions, check, device)
    ctx = census_context(model=net)
    full = probe.census(ctx, net, ["curve_layer"], positions)["curve_layer"]
    cut = probe.census(ctx, net, ["curve_layer"], positions, small)["curve_layer"]
    assert not np.allclose(full["peak"], cut["peak"], rtol=1e-2)


def test_cropped_census_equals_full_census_on_random_inception() -> None:
    """A random-init InceptionV1 (batch norm, SAME padding, max pools) at 128 px: mixed3b's field (91 px) fits a
    window of 96 px on the stride-8 grid; every unit's tuning statistics are those of full images."""
    torch.manual_seed(0)
    net = InceptionV1(num_classes=4, width=0.25, batch_norm=True, last_layer="mixed3b").eval()
    probe_set = ProbeSet(images=torch.rand(2, 3, 128, 128), labels=torch.zeros(2, dtype=torch.long), classes=("a",))
    ctx = ProbeContext(net, ["mixed3a", "mixed3b"], probe_set, seed=1)
    lenient = dict(
        min_selectivity=1.5,
        max_circular_variance=0.9,
        min_curve_over_line=1.0,
        half_max_width=(0, 360),
        stable_tolerance=180,
        mid_radius=False,
    )  # so that a random init has detectors to compare
    settings = dict(orientations=36, radii=(0.05, 0.1, 0.2, 0.3), random_init=False, **lenient)
    cropped = CurveCensus(**settings).run(ctx)
    full = CurveCensus(**settings, crop=False).run(ctx)
    assert "(96 x 96 of 128 x 128 px" in cropped.info["crop"], cropped.info["crop"]
    same_census(cropped, full, rtol=1e-3)
    assert full.scalars["mixed3a/detectors"] > 0 and full.scalars["mixed3b/detectors"] > 0


def test_no_crop_when_the_field_covers_the_image() -> None:
    torch.manual_seed(0)
    net = InceptionV1(num_classes=4, width=0.25, batch_norm=True, last_layer="mixed4a").eval()
    probe_set = ProbeSet(images=torch.rand(2, 3, 64, 64), labels=torch.zeros(2, dtype=torch.long), classes=("a",))
    ctx = ProbeContext(net, ["mixed4a"], probe_set, seed=1)
    result = CurveCensus(orientations=36, radii=(0.1, 0.2, 0.3), random_init=False).run(ctx)
    assert result.info["crop"] == "full images"  # mixed4a's field (171 px) is larger than 64 px


def test_random_init_census_cache_hits_same_architecture_and_misses_another(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    first = CurveCensus(**SETTINGS).run(census_context(make_model=random_net))
    assert first.info["random_init"].startswith("computed (cropped); cached in")
    files = list((tmp_path / "curves").glob("*.json"))
    assert len(files) == 1
    hit = CurveCensus(**SETTINGS).run(census_context(make_model=random_net))
    assert hit.info["random_init"].startswith("cached census")
    assert hit.scalars == first.scalars and hit.tables == first.tables
    uncached = CurveCensus(**SETTINGS, cache_random_init=False).run(census_context(make_model=random_net))
    assert uncached.scalars == first.scalars and uncached.info["random_init"] == "computed (cropped)"
    # A hit is read, not recomputed: a planted entry under the same key comes back as is.
    files[0].write_text(json.dumps({"curve_layer": [0, 1, 2]}))
    assert (
        CurveCensus(**SETTINGS).run(census_context(make_model=random_net)).scalars["curve_layer/detectors_random_init"]
        == 3.0
    )
    # Another architecture (10 units), other weights of this one, other settings: each its own entry.
    CurveCensus(**SETTINGS).run(census_context(make_model=lambda: OneConv(torch.randn(10, 15, 15))))
    CurveCensus(**SETTINGS).run(census_context(make_model=lambda: OneConv(torch.randn(12, 15, 15) * 2)))
    other = CurveCensus(**SETTINGS, min_selectivity=2.5).run(census_context(make_model=random_net))
    assert other.info["random_init"].startswith("computed")
    assert len(list((tmp_path / "curves").glob("*.json"))) == 4


def test_model_digest_follows_architecture_and_weights() -> None:
    torch.manual_seed(0)
    a = InceptionV1(num_classes=4, width=0.25, last_layer="mixed3b")
    torch.manual_seed(0)
    b = InceptionV1(num_classes=4, width=0.25, last_layer="mixed3b")
    torch.manual_seed(0)
    c = InceptionV1(num_classes=4, width=0.25, last_layer="mixed3a")
    assert control_cache.model_digest(a) == control_cache.model_digest(b) != control_cache.model_digest(c)
    with torch.no_grad():
        b.fc.bias[0] += 1e-6
    assert control_cache.model_digest(a) != control_cache.model_digest(b)


def test_consumers_reuse_the_round_census_when_curves_skipped_a_layer(monkeypatch) -> None:
    """Ablation, featvis and lineage ask for the run's layers; curves leaves out those whose receptive field is too
    small (`info["skipped_layers"]`). The round's census still serves them: no second census (minutes at 224 px).
    Negative control: a layer the round neither censused nor skipped does rerun the probe."""
    from harness.probes.units import probe_units

    torch.manual_seed(0)
    net = InceptionV1(num_classes=4, width=0.25, batch_norm=True, last_layer="mixed3b").eval()
    probe_set = ProbeSet(images=torch.rand(2, 3, 64, 64), labels=torch.zeros(2, dtype=torch.long), classes=("a",))
    ctx = ProbeContext(net, ["conv2d0", "mixed3a", "mixed3b"], probe_set, seed=1)
    ctx.results["curves"] = CurveCensus(orientations=36, radii=(0.1, 0.2, 0.3), random_init=False).run(ctx)
    assert ctx.results["curves"].info["skipped_layers"] == ["conv2d0"]  # a 7 px field
    runs: list[list[str]] = []
    monkeypatch.setattr(CurveCensus, "run", lambda self, c: runs.append(self.layers) or ctx.results["curves"])
    rows = probe_units(ctx, "curves", ["conv2d0", "mixed3a", "mixed3b"])
    assert not runs and {r["layer"] for r in rows} == {"mixed3a", "mixed3b"}
    probe_units(ctx, "curves", ["conv2d1", "mixed3b"])
    assert runs == [["conv2d1", "mixed3b"]]


def test_positions_follow_the_architecture_so_other_weights_hit_the_cache(tmp_path, monkeypatch) -> None:
    """mixed4a's field (171 px) is larger than a 64 px image: its centre cannot be read off the support, and a
    centroid on the model's own weights would move with them. Measured on the geometric copy, two inits of one
    architecture are read at the same positions, so the second run's random-init census comes from the cache."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    probe_set = ProbeSet(images=torch.rand(2, 3, 64, 64), labels=torch.zeros(2, dtype=torch.long), classes=("a",))

    def net(seed: int) -> InceptionV1:
        torch.manual_seed(seed)
        return InceptionV1(num_classes=4, width=0.25, batch_norm=True, last_layer="mixed4a").eval()

    infos = []
    for seed in (1, 2):
        ctx = ProbeContext(net(seed), ["mixed3a", "mixed4a"], probe_set, make_model=lambda: net(99), seed=0)
        result = CurveCensus(orientations=36, radii=(0.1, 0.2, 0.3)).run(ctx)
        infos.append((result.info["centre_index"], result.info["random_init"]))
    assert infos[0][0] == infos[1][0]
    assert infos[0][1].startswith("computed") and infos[1][1].startswith("cached census")


def test_large_images_show_half_the_orientations_and_keep_the_planted_verdict() -> None:
    """Above `large_image_px` the census shows `large_image_orientations` (10 deg steps, half the stimuli) and
    says so; the four planted arc detectors are still found, and none of the line or random units. At or below
    the size, or with the setting off, it shows the full 72 (controls)."""
    big = CurveCensus(**SETTINGS, random_init=False, large_image_px=SIZE - 1).run(census_context())
    assert big.info["stimuli"].startswith("36 orientations") and "36 (not 72)" in big.info["orientations"]
    assert big.scalars["curve_layer/detectors"] == 4.0
    assert sorted(r["unit"] for r in big.tables["units"] if r["is_curve_detector"]) == [0, 1, 2, 3]
    assert len(CurveCensus(large_image_px=SIZE - 1).stimuli(SIZE).images) == len(CurveCensus().stimuli(SIZE).images) / 2
    for probe in (CurveCensus(**SETTINGS, random_init=False), CurveCensus(**SETTINGS, random_init=False,
                  large_image_px=SIZE - 1, large_image_orientations=None)):  # fmt: skip
        full = probe.run(census_context())
        assert full.info["stimuli"].startswith("72 orientations") and "orientations" not in full.info
    assert CurveCensus(large_image_px=SIZE - 1).settings() != CurveCensus().settings()  # distinct cache keys
    with pytest.raises(ConfigError, match="large_image_orientations"):
        CurveCensus(large_image_orientations=12)
