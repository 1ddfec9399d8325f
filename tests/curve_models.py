"""A planted curve-detector layer for the curves probe's tests: `OneConv`, one Conv+ReLU layer with hand-made kernels
(arc, line, random and blob filters), so every verdict of the census is known in advance.

Why a module of its own: the census tests (tests/test_probe_curves.py) and its speed-up tests
(tests/test_probe_curves_crop_and_cache.py) probe the same planted units; a test module never imports another.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.models import ConvReLU
from harness.probes import ProbeContext, ProbeSet
from harness.probes.curve_stimuli import arc_distance, line_distance

SIZE, K = 33, 15  # odd image and kernel: the centre output index sees exactly the stimulus centre
RADII = (0.1, 0.2, 0.3, 0.4)  # x 33 px = 3.3, 6.6, 9.9, 13.2: the planted 6.6 px is a middle radius
ARC_ANGLES = (0.0, 90.0, 180.0, 270.0)
SETTINGS = dict(radii=RADII)  # 72 orientations (5 deg) as in the default config


class OneConv(nn.Module):
    """A single Conv+ReLU layer (no pooling) exposed as ``curve_layer``; ``pooled`` has no spatial map."""

    def __init__(self, kernels: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.curve_layer = ConvReLU(3, len(kernels), K)
        self.pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        with torch.no_grad():
            self.curve_layer.conv.weight.copy_(kernels[:, None].expand(-1, 3, -1, -1) / 3)
            self.curve_layer.conv.bias.copy_(torch.zeros(len(kernels)) if bias is None else bias)

    def hook_points(self) -> dict[str, nn.Module]:
        return {"curve_layer": self.curve_layer, "pooled": self.pooled}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.curve_layer(x))


def stroke_ink(dist: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1.5 - dist, 0, 1)  # a 2 px anti-aliased stroke, as the probe draws


def threshold_detector(template: torch.Tensor, own: torch.Tensor, threshold: float = 0.4) -> tuple[torch.Tensor, float]:
    """Zero-mean kernel and a bias that makes the unit fire only above `threshold` x its response to `own`.

    Why a threshold: every arc passes through the centre, so any linear arc filter also answers every
    other arc (through the shared crossing and the shared tangent); a firing threshold is what a trained
    unit's bias does, and it is what makes a linear filter's tuning peaked.
    """
    kernel = template - template.mean()
    return kernel, -threshold * 0.5 * float((kernel * own).sum())  # light stroke on grey 0.5: 0.5 * w . ink


def planted_net() -> OneConv:
    """Units 0-3: arc detectors (r = 6.6 px) at 0/90/180/270 deg; 4-7: line detectors at 0/45/90/135 (same
    recipe); 8-10: random filters; 11: a centre blob. Arc detector = matched filter of the arc pooled over
    +-20 deg, minus half its tangent line, zero-mean, thresholded at 40% of its response to its own arc."""
    centre, radius = ((K - 1) / 2, (K - 1) / 2), torch.tensor([0.2 * SIZE])
    chord = 2 * radius * math.sin(math.radians(60))
    kernels, biases = [], []
    for angle in ARC_ANGLES:
        spread = torch.deg2rad(angle + torch.linspace(-20, 20, 5))
        pooled = stroke_ink(arc_distance(K, spread, radius, 120.0, centre)[:, 0]).mean(0)
        tangent = stroke_ink(line_distance(K, torch.deg2rad(torch.tensor([angle])), chord, centre)[0, 0])
        own = stroke_ink(arc_distance(K, torch.deg2rad(torch.tensor([angle])), radius, 120.0, centre)[0, 0])
        kernel, bias = threshold_detector(pooled - 0.5 * tangent, own)
        kernels.append(kernel)
        biases.append(bias)
    for angle in (0.0, 45.0, 90.0, 135.0):
        spread = torch.deg2rad(angle + torch.linspace(-20, 20, 5))
        pooled = stroke_ink(line_distance(K, spread, chord, centre)[:, 0]).mean(0)
        own = stroke_ink(line_distance(K, torch.deg2rad(torch.tensor([angle])), chord, centre)[0, 0])
        kernel, bias = threshold_detector(pooled, own)
        kernels.append(kernel)
        biases.append(bias)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        kernel = torch.randn(K, K, generator=gen)
        kernels.append(kernel - kernel.mean())
        biases.append(0.0)
    yy, xx = torch.meshgrid(torch.arange(K) - centre[0], torch.arange(K) - centre[1], indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / 8.0)
    kernels.append(blob - blob.mean())
    biases.append(0.0)
    return OneConv(torch.stack(kernels), torch.tensor(biases))


def random_net() -> OneConv:
    return OneConv(torch.randn(12, K, K))


def census_context(make_model=None, model: nn.Module | None = None) -> ProbeContext:
    probe_set = ProbeSet(
        images=torch.full((2, 3, SIZE, SIZE), 0.5), labels=torch.zeros(2, dtype=torch.long), classes=("a",)
    )
    return ProbeContext(model or planted_net(), ["curve_layer"], probe_set, make_model=make_model, seed=3)
