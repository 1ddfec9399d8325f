"""Canonical geometry of the world's shape classes, as polylines.

Why polylines: every class becomes "a set of points along a stroke", so one renderer
(`render.splat_strokes`) draws all of them, and rotation/placement are the same few lines
of maths for every class. Builders sample each curve at most `DENSE` px apart (any
parametrisation); `resample` then spaces points evenly in arc length, so every shape gets
exactly as many points as its length needs and strokes look the same along their length.

Sizes below are in pixels at 64 px and are multiplied by `scale = image_size / 64`.
The ranges are chosen so the classes differ clearly by geometry alone:
arc_high radii (4-9) and arc_low radii (18-30) never overlap; arc_low spans at least 80 deg,
so its sagitta is at least 18% of its chord (never "almost a line"); waves have an amplitude
of at least 3.5 px; spirals have at least 1.25 turns with turns at least 5 px apart; corners
bend by at least 45 deg; closed curves have no gap while arcs miss at least 90 deg.

Canonical frame: x right, y up (maths convention), before rotation. Orientation 0 means:
arcs bulge towards +x (the arc's midpoint lies at angle 0 from its circle's centre); lines,
waves run along x; a corner's bisector points to +x from its vertex (the arms open towards
+x); an ellipse's major axis lies along x; a spiral starts (inner end) towards +x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Ranges in px at 64 px (radius, length, ...) or degrees (span, angle).
ARC_HIGH_RADIUS = (4.0, 9.0)
ARC_HIGH_SPAN = (90.0, 270.0)
ARC_LOW_RADIUS = (18.0, 30.0)
ARC_LOW_SPAN = (80.0, 130.0)
LINE_LENGTH = (20.0, 50.0)
CORNER_ARM = (12.0, 26.0)
CORNER_ANGLE = (45.0, 135.0)
CLOSED_SEMI_AXIS = (8.0, 22.0)
CLOSED_ASPECT = (0.55, 1.0)
WAVE_LENGTH = (36.0, 52.0)
WAVE_PERIOD = (12.0, 20.0)
WAVE_AMPLITUDE = (3.5, 6.0)
SPIRAL_TURNS = (1.25, 2.0)
SPIRAL_PITCH = (5.0, 8.0)
SPIRAL_INNER = (1.0, 3.0)
DENSE = 1.0  # px between the builders' raw samples; chords then deviate < 0.03 px from the curve
# Curvature-ladder arcs (the `world_curvature` task): four radius bands ~1.7x apart, all with the SAME
# arc-length range, so size, length and position carry no label and only curvature tells them apart.
ARC_LADDER_RADIUS: dict[str, tuple[float, float]] = {
    "arc_r4": (3.5, 4.5),
    "arc_r7": (6.2, 7.8),
    "arc_r12": (10.5, 13.5),
    "arc_r20": (17.5, 22.5),
}
ARC_LADDER_LENGTH = (14.0, 20.0)  # px of arc; at radius 3.5 px the longest arc still leaves a 33 deg gap


@dataclass
class ShapeSample:
    """A batch of one class's shapes in the canonical frame (px, y up), before placement.

    Usage: ``s = BUILDERS["arc_high"](16, 1.0, gen); s.points.shape == (16, P, 2)``
    """

    points: torch.Tensor  # [n, P, 2] float32 (x, y)
    curved: bool  # the stroke belongs to the "curve" concept (else "line")
    curvature: torch.Tensor  # [n] 1/px; see `World` for what it means per class
    radius: torch.Tensor  # [n] px; NaN where a radius is not meaningful


def _uniform(n: int, lo_hi: tuple[float, float], gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    lo, hi = lo_hi
    return (lo + (hi - lo) * torch.rand(n, generator=gen)) * scale


def _count(max_length: float) -> int:
    """Points needed so that the longest shape of a class is sampled every `DENSE` px."""
    return max(2, math.ceil(max_length / DENSE) + 1)


def _nan(n: int) -> torch.Tensor:
    return torch.full((n,), float("nan"))


def _arc(n: int, scale: float, gen: torch.Generator, radius_range, span_range) -> ShapeSample:
    radius = _uniform(n, radius_range, gen, scale)
    span = torch.deg2rad(_uniform(n, span_range, gen))
    p = _count(radius_range[1] * scale * math.radians(span_range[1]))
    t = torch.linspace(-0.5, 0.5, p)[None, :] * span[:, None]  # [n, P] angle on the circle
    pts = torch.stack([torch.cos(t), torch.sin(t)], -1) * radius[:, None, None]
    return ShapeSample(pts, True, 1.0 / radius, radius)


def arc_high(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    return _arc(n, scale, gen, ARC_HIGH_RADIUS, ARC_HIGH_SPAN)


def arc_low(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    return _arc(n, scale, gen, ARC_LOW_RADIUS, ARC_LOW_SPAN)


def line(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    half = _uniform(n, LINE_LENGTH, gen, scale) / 2
    zero = torch.zeros(n)
    pts = torch.stack([torch.stack([-half, zero], -1), torch.stack([half, zero], -1)], 1)  # two ends
    return ShapeSample(pts, False, torch.zeros(n), _nan(n))


def corner(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    """Two straight arms joined at a vertex at the canonical origin (so `place` returns it)."""
    half = torch.deg2rad(_uniform(n, CORNER_ANGLE, gen)) / 2
    arm1, arm2 = _uniform(n, CORNER_ARM, gen, scale), _uniform(n, CORNER_ARM, gen, scale)
    ux, uy = torch.cos(half), torch.sin(half)
    end1 = torch.stack([arm1 * ux, arm1 * uy], -1)  # arm at +half
    end2 = torch.stack([arm2 * ux, -arm2 * uy], -1)  # arm at -half
    return ShapeSample(torch.stack([end1, torch.zeros(n, 2), end2], 1), False, torch.zeros(n), _nan(n))


def closed_curve(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    """Ellipse (aspect 1 = circle); curvature/radius use the mean semi-axis."""
    a = _uniform(n, CLOSED_SEMI_AXIS, gen, scale)
    b = a * _uniform(n, CLOSED_ASPECT, gen)
    t = torch.linspace(0.0, 2 * math.pi, _count(2 * math.pi * CLOSED_SEMI_AXIS[1] * scale))[None, :]
    pts = torch.stack([a[:, None] * torch.cos(t), b[:, None] * torch.sin(t)], -1)
    mean = (a + b) / 2
    return ShapeSample(pts, True, 1.0 / mean, mean)


def wave(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    """Sinusoid along x with random phase; curvature is the peak curvature A*(2*pi/period)^2."""
    length = _uniform(n, WAVE_LENGTH, gen, scale)
    period = _uniform(n, WAVE_PERIOD, gen, scale)
    amp = _uniform(n, WAVE_AMPLITUDE, gen, scale)
    phase = 2 * math.pi * torch.rand(n, generator=gen)
    steep = 2 * math.pi * WAVE_AMPLITUDE[1] / WAVE_PERIOD[0]  # max slope bounds the arc length
    p = _count(WAVE_LENGTH[1] * scale * math.sqrt(1 + steep**2))
    x = torch.linspace(-0.5, 0.5, p)[None, :] * length[:, None]
    k = 2 * math.pi / period[:, None]
    y = amp[:, None] * torch.sin(k * x + phase[:, None])
    return ShapeSample(torch.stack([x, y], -1), True, amp * (2 * math.pi / period) ** 2, _nan(n))


def spiral(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
    """Archimedean spiral r = b*phi, random handedness; curvature/radius use the mean radius."""
    turns = _uniform(n, SPIRAL_TURNS, gen)
    pitch = _uniform(n, SPIRAL_PITCH, gen, scale)  # distance between successive turns
    inner = _uniform(n, SPIRAL_INNER, gen, scale)
    hand = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    b = pitch / (2 * math.pi)
    phi0 = inner / b
    phi1 = phi0 + 2 * math.pi * turns
    outer_max = (SPIRAL_INNER[1] + SPIRAL_PITCH[1] * SPIRAL_TURNS[1]) * scale
    # Arc length ~ pi*turns*(inner+outer); 30% slack keeps raw samples <= DENSE apart everywhere.
    p = _count(1.3 * math.pi * SPIRAL_TURNS[1] * (SPIRAL_INNER[1] * scale + outer_max))
    u = torch.linspace(0.0, 1.0, p)[None, :]
    # phi ~ sqrt(u) makes the points roughly uniform in arc length (s grows like phi^2).
    phi = torch.sqrt(phi0[:, None] ** 2 + u * (phi1**2 - phi0**2)[:, None])
    r = b[:, None] * phi
    ang = phi - phi0[:, None]
    pts = torch.stack([r * torch.cos(ang), hand[:, None] * r * torch.sin(ang)], -1)
    mean = (inner + b * phi1) / 2
    return ShapeSample(pts, True, 1.0 / mean, mean)


def _ladder_arc(band: tuple[float, float]) -> Callable[[int, float, torch.Generator], ShapeSample]:
    """An arc builder for one radius band of the curvature ladder: span = length / radius."""

    def build(n: int, scale: float, gen: torch.Generator) -> ShapeSample:
        radius = _uniform(n, band, gen, scale)
        length = _uniform(n, ARC_LADDER_LENGTH, gen, scale)
        span = length / radius  # radians
        p = _count(ARC_LADDER_LENGTH[1] * scale)
        t = torch.linspace(-0.5, 0.5, p)[None, :] * span[:, None]
        pts = torch.stack([torch.cos(t), torch.sin(t)], -1) * radius[:, None, None]
        return ShapeSample(pts, True, 1.0 / radius, radius)

    return build


BUILDERS: dict[str, Callable[[int, float, torch.Generator], ShapeSample]] = {
    "arc_high": arc_high,
    "arc_low": arc_low,
    "line": line,
    "corner": corner,
    "closed_curve": closed_curve,
    "wave": wave,
    "spiral": spiral,
    # Added classes (not in the default world): the curvature ladder.
    **{name: _ladder_arc(band) for name, band in ARC_LADDER_RADIUS.items()},
}


def place(
    points: torch.Tensor, theta_deg: torch.Tensor, margin: torch.Tensor, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate canonical shapes counter-clockwise (as seen on screen) and drop them at a random
    position with their bounding box at least `margin` px inside the image.

    Why a bounding-box rule: the shape's full geometry stays visible (a cropped spiral could
    look like an arc), yet small shapes still roam over the whole image.
    Returns pixel coordinates [n, P, 2] as (col, row) with y down, and the pixel position of
    the canonical origin [n, 2] (a corner's vertex).
    """
    t = torch.deg2rad(theta_deg)[:, None]
    c, s = torch.cos(t), torch.sin(t)
    x, y = points[..., 0], points[..., 1]
    col = x * c - y * s
    row = -(x * s + y * c)  # screen rows grow downwards
    rot = torch.stack([col, row], -1)
    lo = margin[:, None] - rot.amin(1)  # smallest allowed offset, [n, 2]
    hi = size - margin[:, None] - rot.amax(1)
    u = torch.rand(lo.shape, generator=gen)
    offset = torch.where(hi >= lo, lo + u * (hi - lo), (lo + hi) / 2)
    return rot + offset[:, None, :], offset


def resample(points: torch.Tensor, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Points evenly spaced by `spacing` px of arc length along each polyline, ends included.

    Returns points [n, Q, 2] and valid [n, Q] (shorter shapes pad with their end point).
    Why: rendering cost and stroke quality then depend on a shape's length, not on how its
    builder happened to parametrise it.
    """
    seg = (points[:, 1:] - points[:, :-1]).norm(dim=-1)  # [n, P-1]
    cum = torch.cat([torch.zeros(points.shape[0], 1), seg.cumsum(1)], 1)  # [n, P] arc length
    total = cum[:, -1]
    q = max(2, math.ceil(float(total.max()) / spacing) + 1) if points.shape[0] else 2
    steps = torch.arange(q, dtype=torch.float32) * spacing
    target = torch.minimum(steps[None, :], total[:, None])  # [n, Q]
    hi = torch.searchsorted(cum, target).clamp(1, points.shape[1] - 1)
    lo = hi - 1
    c_lo, c_hi = cum.gather(1, lo), cum.gather(1, hi)
    w = ((target - c_lo) / (c_hi - c_lo).clamp(min=1e-9)).clamp(0, 1)[..., None]
    p_lo = points.gather(1, lo[..., None].expand(-1, -1, 2))
    p_hi = points.gather(1, hi[..., None].expand(-1, -1, 2))
    valid = steps[None, :] < total[:, None] + spacing  # keeps exactly one copy of the end point
    return p_lo + w * (p_hi - p_lo), valid
