"""Anti-aliased arc and straight-line stimuli for radial tuning (the `curves` probe).

Convention (the same as the world's arcs in `harness.data.shapes`): maths frame, x right, y up,
angles counter-clockwise on screen. An arc of orientation θ and radius r is the part of the circle
of radius r whose centre lies at distance r from the stimulus centre in direction θ + 180°, spanning
`span` degrees symmetrically about the point where it passes through the stimulus centre. So every
arc passes through the centre, its convex side points toward θ, and θ = 0 bulges towards +x.
The line control "at θ" is the arc's tangent at the centre (the r -> infinity limit): a segment
through the centre along θ + 90°, as long as the arc's chord. Lines at θ and θ + 180° coincide, so
only orientations below 180° are drawn.
The corner control "at θ" has its vertex at the centre (where the arc's apex is) and its bisector
pointing toward θ (the arc's bulge): two straight arms leave the vertex at θ + 180° ± α/2 for an
opening angle α, each as long as the straight distance from the arc's apex to its ends (2r sin(span/4)).
At α = 180° it is the line control; the world's corners open 45-135°. Why corners: a corner-tuned unit
answers a 120° arc (a bend) and no straight line, so arcs against lines alone count it as a curve detector.

Why our own renderer (not the world's): the stimulus must be centred to the sub-pixel on a chosen
point, with an exact stroke width and nothing else in the image (no noise, no colour), in both
polarities. Coverage is the usual box-filter approximation clamp(w/2 + 1/2 - d, 0, 1) with d the
distance from the pixel centre to the curve, which anti-aliases without supersampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Stimuli:
    """Images [N, 3, S, S] in [0, 1]: arcs [polarity, radius, orientation], lines [polarity, radius, orientation],
    then corners [polarity, radius, angle, orientation] (none unless asked for).

    Usage: ``s = make_stimuli(64, 72, [8.0, 16.0]); s.images[: s.n_arcs]``
    """

    images: torch.Tensor
    orientations: torch.Tensor  # [K] degrees of the arcs, 0 ... 360 - 360/K
    radii: torch.Tensor  # [R] px
    line_orientations: torch.Tensor  # [L] degrees, 0 ... 180 - 360/K
    corner_angles: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [A] opening angles, degrees
    corner_orientations: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [Kc] bisector degrees

    @property
    def n_arcs(self) -> int:
        return 2 * len(self.radii) * len(self.orientations)

    @property
    def n_lines(self) -> int:
        return 2 * len(self.radii) * len(self.line_orientations)

    @property
    def n_corners(self) -> int:
        """Corners come last: [polarity, radius, angle, orientation]."""
        return 2 * len(self.radii) * len(self.corner_angles) * len(self.corner_orientations)


def _grid(size: int, centre: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates relative to `centre` (row, col in pixel-index units), y pointing up."""
    idx = torch.arange(size, dtype=torch.float32)
    x = (idx - centre[1])[None, :].expand(size, size)
    y = (centre[0] - idx)[:, None].expand(size, size)
    return x, y


def arc_distance(size: int, theta: torch.Tensor, radius: torch.Tensor, span: float, centre) -> torch.Tensor:
    """Distance [K, R, S, S] from each pixel centre to each arc (orientations `theta` rad x `radius` px)."""
    x, y = _grid(size, centre)
    th = theta[:, None, None, None]
    r = radius[None, :, None, None]
    cx, cy = -r * torch.cos(th), -r * torch.sin(th)  # circle centre, opposite to the bulge
    vx, vy = x - cx, y - cy
    rho = torch.hypot(vx, vy)
    half = math.radians(span) / 2
    # inside the span iff the angle between (pixel - circle centre) and the bulge direction is <= half
    inside = vx * torch.cos(th) + vy * torch.sin(th) >= rho * math.cos(half)
    ends = []
    for sign in (-1.0, 1.0):  # the arc's two end points
        ex, ey = cx + r * torch.cos(th + sign * half), cy + r * torch.sin(th + sign * half)
        ends.append(torch.hypot(x - ex, y - ey))
    return torch.where(inside, (rho - r).abs(), torch.minimum(*ends))


def line_distance(size: int, theta: torch.Tensor, length: torch.Tensor, centre) -> torch.Tensor:
    """Distance [K, R, S, S] to segments through the centre along theta + 90° (rad), `length` px long."""
    x, y = _grid(size, centre)
    tx = torch.cos(theta + math.pi / 2)[:, None, None, None]
    ty = torch.sin(theta + math.pi / 2)[:, None, None, None]
    half = (length / 2)[None, :, None, None]
    s = torch.clamp(x * tx + y * ty, min=-half, max=half)
    return torch.hypot(x - s * tx, y - s * ty)


def corner_distance(size: int, theta: torch.Tensor, angle: float, arm: torch.Tensor, centre) -> torch.Tensor:
    """Distance [K, R, S, S] to corners with the vertex at the centre, bisector toward `theta` (rad), opening
    `angle` (degrees) and arms `arm` px long (one per radius)."""
    x, y = _grid(size, centre)
    length = arm[None, :, None, None]
    dists = []
    for sign in (-1.0, 1.0):  # each arm leaves the vertex at theta + 180° -/+ angle / 2
        a = theta + math.pi + sign * math.radians(angle) / 2
        ux, uy = torch.cos(a)[:, None, None, None], torch.sin(a)[:, None, None, None]
        s = torch.clamp(x * ux + y * uy, min=torch.zeros_like(length), max=length)
        dists.append(torch.hypot(x - s * ux, y - s * uy))
    return torch.minimum(*dists)


def make_stimuli(
    size: int,
    orientations: int,
    radii: Sequence[float],
    span: float = 120.0,
    stroke: float = 2.0,
    centre: tuple[float, float] | None = None,
    corner_angles: Sequence[float] = (),
    corner_step: int = 2,
) -> Stimuli:
    """Arcs at `orientations` steps over 360° x `radii` (px) plus chord-length lines, both polarities, plus
    corners of each opening angle in `corner_angles` at every `corner_step`-th arc orientation.

    Why every second orientation for corners: they only enter through the best corner response (a maximum),
    which a 10° grid finds as well as a 5° one for tunings 30° or wider, at half the passes.

    `centre` is (row, col) in pixel-index units; default the image centre ((S-1)/2, (S-1)/2).
    Background 0.5; dark strokes (0) come first, then light strokes (1), for arcs and lines alike.
    """
    centre = ((size - 1) / 2, (size - 1) / 2) if centre is None else centre
    deg = torch.arange(orientations, dtype=torch.float32) * (360.0 / orientations)
    line_deg = deg[deg < 180.0]
    r = torch.tensor([float(v) for v in radii], dtype=torch.float32)
    chord = 2 * r * math.sin(math.radians(min(span, 180.0)) / 2)  # the arc's extent across its tangent
    corner_deg = deg[:: max(1, corner_step)]
    angles = torch.tensor([float(a) for a in corner_angles], dtype=torch.float32)
    arm = 2 * r * math.sin(math.radians(span) / 4)  # straight distance from the arc's apex to its ends
    n_r, n_k, n_l, n_a, n_c = len(r), len(deg), len(line_deg), len(angles), len(corner_deg)
    # One radius at a time and one grey channel shown as three (a view): at 224 px the full stack
    # of distance maps and RGB copies would take gigabytes.
    grey = torch.empty(2 * n_r * (n_k + n_l + n_a * n_c), size, size)
    corner_base = 2 * n_r * (n_k + n_l)
    for i in range(n_r):
        d_arc = arc_distance(size, torch.deg2rad(deg), r[i : i + 1], span, centre)[:, 0]  # [K, S, S]
        d_line = line_distance(size, torch.deg2rad(line_deg), chord[i : i + 1], centre)[:, 0]  # [L, S, S]
        d_corner = [corner_distance(size, torch.deg2rad(corner_deg), float(a), arm[i : i + 1], centre)[:, 0]
                    for a in angles.tolist()]  # fmt: skip
        d_corner = torch.cat(d_corner) if d_corner else torch.empty(0, size, size)  # [A * Kc, S, S]
        for base, n, dist in ((0, n_k, d_arc), (2 * n_r * n_k, n_l, d_line), (corner_base, n_a * n_c, d_corner)):
            alpha = torch.clamp(stroke / 2 + 0.5 - dist, 0.0, 1.0)
            for p, polarity in enumerate((-1.0, 1.0)):  # dark strokes first, then light
                start = base + (p * n_r + i) * n
                grey[start : start + n] = 0.5 + 0.5 * polarity * alpha
    return Stimuli(grey[:, None].expand(-1, 3, -1, -1), deg.float(), r.float(), line_deg.float(), angles, corner_deg)
