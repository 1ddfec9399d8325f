"""Rasterisation for the stimulus world: anti-aliased strokes, backgrounds, colours.

Why point splatting: a stroke of half-width r covers a pixel by about clamp(r + 0.5 - d, 0, 1),
where d is the distance from the pixel centre to the curve. Evaluating that only in a small
window around each densely sampled point, and keeping the max per pixel (scatter "amax"),
gives exact-looking anti-aliased strokes in a few vectorised ops for a whole batch, and the
same coverage thresholded at 0.5 is the concept mask, so masks line up with drawn pixels by
construction. Each concept gets its own canvas channel, which yields per-concept masks for free.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA = torch.tensor([0.299, 0.587, 0.114])  # Rec. 601 weights; they sum to 1


def splat_strokes(
    col: torch.Tensor,
    row: torch.Tensor,
    image: torch.Tensor,
    channel: torch.Tensor,
    half_width: torch.Tensor,
    n: int,
    channels: int,
    size: int,
    max_half_width: float,
) -> torch.Tensor:
    """Coverage [n, channels, size, size] in [0, 1] of strokes through the given points.

    All inputs but the sizes are flat [M] tensors, one entry per point: pixel position
    (col, row; pixel (i, j) spans [j, j+1) x [i, i+1)), image index, canvas channel and the
    stroke half-width of that point's shape. `max_half_width` fixes the window size.
    The result is a view into a padded canvas: windows near the border land in the padding,
    so no per-element bounds checks are needed.
    """
    reach = math.ceil(max_half_width + 1.0) - 1  # pixel centres closer than r + 0.5 to the point
    pad = reach + 1
    side = size + 2 * pad
    canvas = torch.zeros(n * channels * side * side)
    keep = (col >= -1) & (col < size + 1) & (row >= -1) & (row < size + 1)  # others cannot show
    if not bool(keep.all()):
        col, row, image, channel, half_width = col[keep], row[keep], image[keep], channel[keep], half_width[keep]
    if col.numel() > 0:
        offs = torch.arange(-reach, reach + 1)
        fx, fy = col.floor(), row.floor()
        dx2 = ((fx + 0.5 - col)[:, None] + offs).square_()  # [M, w]
        dy2 = ((fy + 0.5 - row)[:, None] + offs).square_()
        dist = (dy2[:, :, None] + dx2[:, None, :]).sqrt_()  # [M, w (rows), w (cols)]
        cov = torch.sub((half_width + 0.5)[:, None, None], dist, out=dist).clamp_(0.0, 1.0)
        base = ((image * channels + channel) * side + fy.long() + pad) * side + fx.long() + pad
        window = offs[:, None] * side + offs[None, :]
        flat = base[:, None, None] + window
        canvas.scatter_reduce_(0, flat.view(-1), cov.view(-1), "amax")
    return canvas.view(n, channels, side, side)[:, :, pad : pad + size, pad : pad + size]


def random_colours(n: int, min_contrast: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stroke and background RGB [n, 3] in [0, 1] whose luminances differ by >= min_contrast.

    Why luminance first, then chroma: the contrast guarantee is exact (no rejection loop), and
    chroma is added along a zero-luminance direction, so colour never erodes the contrast.
    Requires min_contrast <= 0.5 so every background luminance leaves room for a stroke.
    """
    lum_bg = torch.rand(n, generator=gen)
    below = (lum_bg - min_contrast).clamp(min=0.0)  # room for a darker stroke
    above = (1.0 - lum_bg - min_contrast).clamp(min=0.0)
    u = torch.rand(n, generator=gen) * (below + above)
    lum_stroke = torch.where(u < below, u, lum_bg + min_contrast + (u - below))
    return _with_chroma(lum_stroke, gen), _with_chroma(lum_bg, gen)


def _with_chroma(lum: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    r = torch.rand(lum.shape[0], 3, generator=gen) - 0.5
    v = r - (r @ LUMA)[:, None]  # zero luminance: adding it keeps lum exact
    room = torch.where(v > 0, (1.0 - lum[:, None]) / v.clamp(min=1e-6), lum[:, None] / (-v).clamp(min=1e-6))
    t = torch.rand(lum.shape[0], generator=gen) * room.amin(1)
    return (lum[:, None] + t[:, None] * v).clamp(0.0, 1.0)


def interp_matrix(src: int, dst: int, mode: str = "bilinear") -> torch.Tensor:
    """[dst, src] matrix M with M @ x == 1-D `mode` (align_corners=False) upsampling of x.

    Why: upsampling small noise grids as two matmuls (M @ grid @ M.T) is several times
    faster on CPU than F.interpolate over a big batch; both modes are separable.
    """
    eye = torch.eye(src)[:, None, None, :]  # [src, 1, 1, src]: one impulse per row
    return F.interpolate(eye, size=(1, dst), mode=mode, align_corners=False)[:, 0, 0, :].T.contiguous()


def random_bytes(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Uniform random uint8 tensor; ~4x faster than torch.rand, since each 64-bit draw gives 8 bytes."""
    count = math.prod(shape)
    words = torch.empty((count + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1, generator=gen)
    return words.view(torch.uint8)[:count].view(shape)


def background(colour: torch.Tensor, noise: float, up: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Background [n, 3, size, size] = colour [n, 3] + weak luminance blotches and grain, both
    of amplitude `noise` (same units as colour); `up` = interp_matrix(6, size).

    Why: every image carries some unstructured texture, so "no shape" is not "blank" and
    units cannot key on perfectly flat backgrounds. Blotches are upsampled 6x6 noise (far
    coarser than any stroke); grain is per-pixel noise. Neither contains strokes.
    """
    n, size = colour.shape[0], up.shape[0]
    if noise <= 0:
        return colour[:, :, None, None].expand(n, 3, size, size).clone()
    blobs = torch.randn(n, 1, up.shape[1], up.shape[1], generator=gen)
    lum = (up @ blobs @ up.T).mul_(noise)  # [n, 1, size, size]
    lum.add_(random_bytes((n, 1, size, size), gen), alpha=noise / 255).sub_(noise / 2)
    return lum + colour[:, :, None, None]


def strong_texture(n: int, strength: float, up: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Isotropic mottled texture [n, 3, size, size] with std about `strength`;
    `up` = interp_matrix(size // 4, size, "bicubic").

    Why bicubic-upsampled noise on a size/4 grid: blobs about 4 px across (at 64 px) are
    texture-like but have no elongated, oriented structure, so no curve or line concept is
    present that the masks would miss.
    """
    grid = up.shape[1]
    field = torch.randn(n, 1, grid, grid, generator=gen) + 0.5 * torch.randn(n, 3, grid, grid, generator=gen)
    return (up @ field @ up.T).mul_(strength)


def disc_mask(centre: torch.Tensor, radius: float, size: int) -> torch.Tensor:
    """Bool [n, size, size]: pixel centres within `radius` px of `centre` [n, 2] (col, row)."""
    coords = torch.arange(size) + 0.5
    dx2 = (coords[None, None, :] - centre[:, 0, None, None]).square()
    dy2 = (coords[None, :, None] - centre[:, 1, None, None]).square()
    return dx2 + dy2 <= radius * radius
