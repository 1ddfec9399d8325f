"""Render a labelled matrix (layer x layer similarity, unit x concept IoU, ...) as an RGB image.

Why a helper: several probes log matrices as pictures (`ProbeResult.images` holds HxWx3 uint8).
Why Pillow and not matplotlib (which harness-compare uses for its report): a heatmap needs only coloured
cells, a few labels and a colour bar, and drawing them with Pillow is fast inside a probing round and
leaves matplotlib's global state alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Viridis sampled at 9 evenly spaced points (perceptually uniform, readable in grey scale).
_VIRIDIS = np.array(
    [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]],
    dtype=float,
)  # fmt: skip
_BLANK = (235, 235, 235)  # NaN cells


def colourise(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Map values to viridis RGB (float [..., 3] in 0..255) after clipping to [vmin, vmax]."""
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / span, 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (t - lo)[..., None]
    return _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # old Pillow or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def heatmap(
    matrix: np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool | None = None,
    cell: int = 34,
    font_size: int = 11,
) -> np.ndarray:
    """A heatmap of `matrix` [R, C] as an HxWx3 uint8 array with labels, values and a colour bar.

    NaN cells are drawn light grey. `annotate=None` writes values into cells when the matrix is at most 20x20.
    Usage: ``img = heatmap(cka, layers, layers, title="linear CKA", vmin=0, vmax=1)``
    """
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {values.shape}")
    rows, cols = values.shape
    finite = values[np.isfinite(values)]
    vmin = float(finite.min()) if vmin is None and finite.size else (0.0 if vmin is None else float(vmin))
    vmax = float(finite.max()) if vmax is None and finite.size else (1.0 if vmax is None else float(vmax))
    annotate = rows <= 20 and cols <= 20 if annotate is None else annotate
    font = _font(font_size)
    rows_text = [str(s) for s in (row_labels if row_labels is not None else range(rows))]
    cols_text = [str(s) for s in (col_labels if col_labels is not None else range(cols))]
    pad, line = 6, font_size + 4
    left = pad + max([_text_width(font, s) for s in rows_text] + [0]) + pad
    top = pad + (line + pad if title else 0) + max([_text_width(font, s) for s in cols_text] + [0]) + pad
    bar_x = left + cols * cell + 2 * pad
    width = bar_x + 14 + pad + max(_text_width(font, f"{v:.3g}") for v in (vmin, vmax)) + pad
    height = max(top + rows * cell + pad, top + 2 * line)

    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    colours = colourise(values, vmin, vmax).round().astype(np.uint8)
    for r in range(rows):
        y = top + r * cell
        draw.text((left - pad - _text_width(font, rows_text[r]), y + (cell - line) // 2), rows_text[r], "black", font)
        for c in range(cols):
            x = left + c * cell
            fill = tuple(int(v) for v in colours[r, c]) if np.isfinite(values[r, c]) else _BLANK
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fill)
            if annotate and np.isfinite(values[r, c]):
                text = f"{values[r, c]:.2f}"
                ink = "black" if sum(fill) > 380 else "white"
                draw.text((x + (cell - _text_width(font, text)) // 2, y + (cell - line) // 2), text, ink, font)
    for c, text in enumerate(cols_text):  # column labels written vertically, bottom-aligned above the cells
        label = Image.new("RGB", (_text_width(font, text) + 2, line), "white")
        ImageDraw.Draw(label).text((0, 0), text, "black", font)
        label = label.rotate(90, expand=True)
        canvas.paste(label, (left + c * cell + (cell - label.width) // 2, top - pad - label.height))
    bar_h = rows * cell
    ramp = colourise(np.linspace(vmax, vmin, max(bar_h, 2))[:, None].repeat(14, 1), vmin, vmax)
    canvas.paste(Image.fromarray(ramp.round().astype(np.uint8)), (bar_x, top))
    draw.text((bar_x + 14 + pad, top), f"{vmax:.3g}", "black", font)
    draw.text((bar_x + 14 + pad, top + bar_h - line), f"{vmin:.3g}", "black", font)
    return np.asarray(canvas, dtype=np.uint8).copy()
