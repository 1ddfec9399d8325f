"""Small picture helpers shared by probes that log images (examples, feature visualisation).

Why our own and not `torchvision.utils.make_grid`: probes return HxWx3 uint8 numpy arrays (what
loggers take), and their grids want a caption per tile (unit, activation, class), which
make_grid cannot draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_CAPTION_PX = 12  # height of the caption strip above each tile (fits Pillow's default font)


def image_grid(
    images: torch.Tensor,
    nrow: int,
    labels: Sequence[str] | None = None,
    pad: int = 2,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile images [N, C, H, W] (float in [0, 1]; C = 1 or 3) into one HxWx3 uint8 picture.

    `nrow` is the number of images per row, as in torchvision's `make_grid` (so a grid of units x k
    examples takes `nrow=k`). `labels`, one per image, are drawn in a white strip above each tile
    (clipped to the tile width). Usage: ``image_grid(batch, nrow=8, labels=[f"{v:.2f}" for v in acts])``
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image_grid wants [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if nrow < 1:
        raise ValueError(f"image_grid: nrow must be >= 1, got {nrow}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"image_grid: {len(labels)} labels for {len(images)} images")
    n, _, h, w = images.shape
    tiles = images.detach().float().cpu().clamp(0, 1).expand(n, 3, h, w)
    tiles = (tiles * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [N, H, W, 3]
    cap = _CAPTION_PX if labels is not None else 0
    cols, rows = min(nrow, max(n, 1)), max(1, -(-n // nrow))
    cell_h, cell_w = h + cap + pad, w + pad
    grid = np.full((rows * cell_h + pad, cols * cell_w + pad, 3), round(pad_value * 255), dtype=np.uint8)
    for i in range(n):
        top, left = (i // nrow) * cell_h + pad, (i % nrow) * cell_w + pad
        grid[top + cap : top + cap + h, left : left + w] = tiles[i]
        if cap:
            grid[top : top + cap, left : left + w] = 255
    if labels is not None and n:
        _draw_labels(grid, labels, nrow, (cell_h, cell_w), pad, w)
    return grid


def _draw_labels(grid: np.ndarray, labels: Sequence[str], nrow: int, cell: tuple[int, int], pad: int, w: int) -> None:
    """Write each label into its tile's caption strip, in place (Pillow's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont  # torchvision's dependency; only needed for captions

    picture = Image.fromarray(grid)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for i, text in enumerate(labels):
        top, left = (i // nrow) * cell[0] + pad, (i % nrow) * cell[1] + pad
        text = str(text)
        while text and draw.textlength(text, font=font) > w:  # clip to the tile width
            text = text[:-1]
        draw.text((left + 1, top), text, fill=(0, 0, 0), font=font)
    grid[...] = np.asarray(picture)
