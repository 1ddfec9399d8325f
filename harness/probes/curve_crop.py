"""Crop the curve stimuli to the receptive field of the positions the `curves` probe reads.

Why: the census reads one output position per layer, and that position sees only its receptive field;
every stimulus pixel outside it is computed through the whole network and thrown away. On the full
InceptionV1 at 224 px, mixed4a's field is 171 px, so showing the 176 x 176 px window that holds it costs
(176 / 224)^2 = 0.62 of the full image, for the same responses.

How, for any CNN, without knowing its layers: the field of each chosen position is the support of
|d response / d input| on the architecture's geometric copy (`curves.geometric_copy`, positive weights, so
no init hides a connection). The window is that box widened to multiples of the deepest layer's stride
(so every layer's padding and grid are those of the full image), and each position moves by the window's
offset over its layer's stride. The window is used only after a check on the model itself: noise images
and a few stimuli, cropped, must give the full image's responses at those positions (`verify`); max pools
route gradients through one input each, so a measured box can miss part of the field, and padding rules
differ between architectures. When the check fails the window grows by a stride on each side and is
checked again; when nothing smaller than the image passes, the probe shows full images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from harness.models.hooks import capture, eval_mode, forward_until
from harness.probes.probe_set import probe_layout

Positions = dict[str, tuple[int, int, float]]  # layer -> (row, col, offset px), as `curves.centre_positions`


@dataclass(frozen=True)
class Crop:
    """A window (rows top:bottom, cols left:right) of the full image and each layer's position inside it."""

    top: int
    bottom: int
    left: int
    right: int
    positions: Positions

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images[..., self.top : self.bottom, self.left : self.right]

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def describe(self, size: int) -> str:
        h, w = self.shape
        return (f"stimuli cropped to the receptive field: rows {self.top}:{self.bottom}, cols {self.left}:{self.right} "
                f"({h} x {w} of {size} x {size} px, {h * w / size**2:.2f} of the pixels)")  # fmt: skip


def field_boxes(
    model: nn.Module, layers: Sequence[str], positions: Positions, size: int, device: torch.device, seed: int = 0
) -> tuple[dict[str, tuple[int, int, int, int]], dict[str, tuple[int, int]]]:
    """(layer -> receptive-field box (top, bottom, left, right; bottom/right exclusive) of its position,
    layer -> its map's (H, W) at this image size), measured on `model` as given (pass the geometric copy)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, size, size, generator=gen).to(device).requires_grad_(True)
    boxes, shapes = {}, {}
    with torch.enable_grad(), eval_mode(model), capture(model, layers, detach=False, pre_relu=True) as cache:
        forward_until(model, x, layers)
        for name in layers:
            i, j, _ = positions[name]
            (g,) = torch.autograd.grad(cache[name][:, :, i, j].sum(), x, retain_graph=True)
            g = g.abs().sum((0, 1))
            rows = torch.nonzero(g.sum(1) > g.sum(1).max() * 1e-6)[:, 0]
            cols = torch.nonzero(g.sum(0) > g.sum(0).max() * 1e-6)[:, 0]
            boxes[name] = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            shapes[name] = tuple(cache[name].shape[-2:])
    return boxes, shapes


def responses(
    model: nn.Module, layers: Sequence[str], images: torch.Tensor, positions: Positions, device: torch.device
) -> dict[str, torch.Tensor]:
    """Layer -> [N, C] post-ReLU responses at its position (one small batch, no grad)."""
    with torch.no_grad(), eval_mode(model), capture(model, layers) as cache:
        forward_until(model, probe_layout(images.to(device)), layers)
        return {n: cache[n][:, :, positions[n][0], positions[n][1]].float().cpu() for n in layers}


def verify(
    model: nn.Module, crop: Crop, positions: Positions, images: torch.Tensor, device: torch.device, rtol: float = 1e-4
) -> bool:
    """True when the cropped `images` give the full images' responses at every layer, to `rtol` of the layer's
    largest response (float rounding of convolutions on other sizes; a missed field pixel or a shifted grid
    changes responses by far more)."""
    layers = list(positions)
    try:
        full = responses(model, layers, images, positions, device)
        cropped = responses(model, layers, crop(images), crop.positions, device)
    except (RuntimeError, ValueError, IndexError):  # e.g. a window too small for the network
        return False
    for name in layers:
        scale = max(float(full[name].abs().max()), 1e-12)
        if full[name].shape != cropped[name].shape or float((full[name] - cropped[name]).abs().max()) > rtol * scale:
            return False
    return True


def _window(lo: int, hi: int, size: int, stride: int, grow: int) -> tuple[int, int]:
    """[start, end) holding [lo, hi) on the stride grid, widened by `grow` strides each side, inside the image."""
    start = max(0, (lo // stride - grow) * stride)
    end = min(size, (math.ceil(hi / stride) + grow) * stride)
    return start, end


def plan_crop(
    model: nn.Module,
    geometric: nn.Module,
    positions: Positions,
    size: int,
    check_images: torch.Tensor,
    device: torch.device,
    seed: int = 0,
    max_fraction: float = 0.9,
    tries: int = 3,
) -> Crop | None:
    """The smallest checked window holding every position's receptive field, or None (show full images).

    `check_images` [N, 3, size, size]: what `verify` compares on (noise and a few stimuli). None when the
    field covers more than `max_fraction` of the image, or no window of `tries` sizes passes the check.
    """
    layers = list(positions)
    boxes, shapes = field_boxes(geometric, layers, positions, size, device, seed)
    strides = {n: (size // h if size % h == 0 else None, size // w if size % w == 0 else None)
               for n, (h, w) in shapes.items()}  # fmt: skip
    if any(s is None for pair in strides.values() for s in pair):
        return None  # a map that is not the image on an integer grid: a window would shift it
    stride = max(s for pair in strides.values() for s in pair)
    top, bottom = min(b[0] for b in boxes.values()), max(b[1] for b in boxes.values())
    left, right = min(b[2] for b in boxes.values()), max(b[3] for b in boxes.values())
    for grow in range(tries):
        (t, b), (lf, r) = _window(top, bottom, size, stride, grow), _window(left, right, size, stride, grow)
        if (b - t) * (r - lf) > max_fraction * size * size:
            return None
        moved = {n: (i - t // strides[n][0], j - lf // strides[n][1], off) for n, (i, j, off) in positions.items()}
        crop = Crop(t, b, lf, r, moved)
        if min(min(i, j) for i, j, _ in moved.values()) >= 0 and verify(model, crop, positions, check_images, device):
            return crop
    return None
