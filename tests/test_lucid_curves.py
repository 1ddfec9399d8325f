"""scripts/check_lucid_curves.py: the curve census compared with the published InceptionV1 curve detectors.

A planted model stands in for the real weights: four layers named like InceptionV1's, with the channel
counts of the real ones, holding hand-built arc detectors at exactly the reference units (tuned to the
reference orientations), line detectors at two other units (a negative control) and nothing elsewhere.
The check must report full overlap and small orientation errors. The real weights are checked only when
HARNESS_LUCID_WEIGHTS points to Lucid's inception5h.pth.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.probes.curve_stimuli import arc_distance, line_distance

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("check_lucid_curves", ROOT / "scripts" / "check_lucid_curves.py")
check_script = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_script)

SIZE, K = 33, 15  # odd sizes: the centre output position sees exactly the stimulus centre
RADII_PX = (3.3, 6.6, 9.9, 13.2)  # the planted radius 6.6 px is a middle one
CHANNELS = {"conv2d2": 192, "mixed3a": 256, "mixed3b": 480, "mixed4a": 508}
pytestmark = pytest.mark.usefixtures("one_thread")


def _ink(dist: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1.5 - dist, 0, 1)  # the 2 px anti-aliased stroke the census draws


def _filter(angle: float, arc: bool) -> tuple[torch.Tensor, float]:
    """Matched filter of an arc (r = 6.6 px, minus half its tangent) or a line, pooled over +-20 deg; zero-mean,
    with a bias that lets the unit fire only above 40% of its response to its own stimulus."""
    centre, radius = ((K - 1) / 2, (K - 1) / 2), torch.tensor([6.6])
    chord = 2 * radius * math.sin(math.radians(60))
    spread, own = torch.deg2rad(angle + torch.linspace(-20, 20, 5)), torch.deg2rad(torch.tensor([angle]))
    if arc:
        template = _ink(arc_distance(K, spread, radius, 120.0, centre)[:, 0]).mean(0)
        template = template - 0.5 * _ink(line_distance(K, own, chord, centre)[0, 0])
        stimulus = _ink(arc_distance(K, own, radius, 120.0, centre)[0, 0])
    else:
        template = _ink(line_distance(K, spread, chord, centre)[:, 0]).mean(0)
        stimulus = _ink(line_distance(K, own, chord, centre)[0, 0])
    kernel = template - template.mean()
    return kernel, -0.4 * 0.5 * float((kernel * stimulus).sum())  # light stroke on grey 0.5


class PlantedLayer(nn.Module):
    """A bank of K x K filters (valid conv on the grey image) placed at chosen channels of a wider layer."""

    def __init__(self, channels: int, units: list[int], filters: list[tuple[torch.Tensor, float]]) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(1, len(units), K)
        self.register_buffer("units", torch.tensor(units))
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([k for k, _ in filters])[:, None])
            self.conv.bias.copy_(torch.tensor([b for _, b in filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x.mean(1, keepdim=True)))
        return y.new_zeros(len(y), self.channels, *y.shape[-2:]).index_copy(1, self.units, y)


class Planted(nn.Module):
    """Curve detectors at the reference units of every layer; line detectors at two other units per layer."""

    def __init__(self, reference: dict[str, dict[int, float]]) -> None:
        super().__init__()
        layers = {}
        for name, ref in reference.items():
            lines = [u for u in range(CHANNELS[name]) if u not in ref][:2]
            units = [*ref, *lines]
            filters = [_filter(a, arc=True) for a in ref.values()] + [_filter(a, arc=False) for a in (0.0, 90.0)]
            layers[name] = PlantedLayer(CHANNELS[name], units, filters)
        self.layers = nn.ModuleDict(layers)

    def hook_points(self) -> dict[str, nn.Module]:
        return dict(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([layer(x).mean((2, 3)) for layer in self.layers.values()], dim=1)


def test_reference_table_is_the_published_one() -> None:
    reference = check_script.load_reference()
    assert {k: len(v) for k, v in reference.items()} == {"conv2d2": 11, "mixed3a": 11, "mixed3b": 10, "mixed4a": 14}
    assert reference["mixed3b"][379] == 243.0
    assert all(320 <= u < 416 for u in reference["mixed3b"])  # all in mixed3b's 5x5 branch


def test_check_reports_full_overlap_on_a_planted_model() -> None:
    reference = check_script.load_reference()
    model = Planted(reference)
    result = check_script.check(model, reference, size=SIZE, orientations=72, radii_px=RADII_PX)
    print(check_script.report(result["comparison"], result["fit"]))
    for layer, c in result["comparison"].items():
        assert (c["found"], c["extra"]) == (len(reference[layer]), 0), (layer, c)
        assert c["orientation_error_max"] <= 5.0, (layer, c)  # within one 5-degree orientation step
    assert result["fit"]["sign"] == 1.0 and min(result["fit"]["offset"], 360 - result["fit"]["offset"]) <= 2


def test_script_refuses_a_bad_file_with_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "inception5h.pth"
    bad.write_text("not weights")
    assert check_script.main([str(bad)]) == 2
    assert "not a torch file" in capsys.readouterr().err


WEIGHTS = os.environ.get("HARNESS_LUCID_WEIGHTS")


@pytest.mark.skipif(not WEIGHTS, reason="set HARNESS_LUCID_WEIGHTS=/path/to/inception5h.pth to check the real weights")
def test_real_lucid_weights_find_the_published_curve_detectors() -> None:
    from harness.models.build import inception_v1
    from harness.models.hooks import run_with_cache

    model = inception_v1(weights=WEIGHTS, num_classes=1008).eval()
    out, cache = run_with_cache(model, torch.rand(1, 3, 224, 224), names=["mixed3b"])
    assert out.shape == (1, 1008) and cache["mixed3b"].shape == (1, 480, 28, 28)
    reference = check_script.load_reference()
    result = check_script.check(model, {"mixed3b": reference["mixed3b"]}, orientations=36)
    print(check_script.report(result["comparison"], result["fit"]))
    assert result["comparison"]["mixed3b"]["found"] >= 3  # the curve family sits where the literature says
