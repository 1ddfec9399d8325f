"""The curves probe's picture: polar tuning plots of the most selective units (`tuning_plot`).

Why a file of its own: drawing is independent of how the census is measured; `curves.py` imports it.
"""

from __future__ import annotations

import numpy as np

from harness.probes.curve_stimuli import Stimuli

ARC, LINE, CORNER = (30, 80, 200), (230, 130, 20), (40, 160, 60)


def tuning_plot(stats: dict[str, dict], stim: Stimuli, n: int = 8, cell: int = 160) -> np.ndarray:
    """Polar plots (HxWx3 uint8) of the most selective detectors: arc tuning at the preferred radius (blue)
    line responses (orange) and the best corner response per bisector orientation (green), all on one scale (a
    legend strip at the bottom says so), 0° = right,
    counter-clockwise. Falls back to the most selective units when none pass. Drawn with PIL, as every probe image
    is (see heatmap.py for why not matplotlib)."""
    from PIL import Image, ImageDraw

    units = [(s["selectivity"][u], name, u) for name, s in stats.items() for u in np.flatnonzero(s["detector"])]
    title = "curve detectors"
    if not units:
        units = [(s["selectivity"][u], name, u) for name, s in stats.items() for u in range(len(s["peak"]))]
        title = "NO detectors; most selective"
    units = sorted(units, key=lambda t: (-t[0], t[1], t[2]))[: max(n, 1)]
    cols = min(len(units), 4)
    legend = 14  # a bottom strip: title and the key to the two lines
    img = Image.new("RGB", (max(cols * cell, 440), ((len(units) + 3) // 4) * (cell + 12) + legend), "white")
    draw = ImageDraw.Draw(img)
    arc_t = np.deg2rad(stim.orientations.double().numpy())
    line_t = np.deg2rad(stim.line_orientations.double().numpy())
    line_t = np.concatenate([line_t, line_t + np.pi])  # a line at θ is also the line at θ + 180°
    corner_t = np.deg2rad(np.asarray(getattr(stim, "corner_orientations", []), dtype=float))
    for k, (sel, name, u) in enumerate(units):
        s, ox, oy = stats[name], (k % 4) * cell + cell / 2, (k // 4) * (cell + 12) + 12 + cell / 2
        corner_peak = float(s["corner_tuning"][:, u].max()) if len(s.get("corner_tuning", ())) else 0.0
        rad, scale = cell / 2 - 8, max(s["peak"][u], corner_peak, 1e-12)  # a corner unit's corners fit the plot too
        for ring in (0.5, 1.0):
            draw.ellipse([ox - ring * rad, oy - ring * rad, ox + ring * rad, oy + ring * rad], outline=(200, 200, 200))
        draw.line([ox - rad, oy, ox + rad, oy], fill=(220, 220, 220))
        draw.line([ox, oy - rad, ox, oy + rad], fill=(220, 220, 220))
        line_r = np.concatenate([s["line_tuning"][:, u]] * 2)
        curves = [(line_t, line_r, LINE), (arc_t, s["tuning"][:, u], ARC)]
        if len(s.get("corner_tuning", ())):
            curves.insert(1, (corner_t, s["corner_tuning"][:, u], CORNER))
        for t, r, colour in curves:
            rr = np.clip(r / scale, 0, 1.05) * rad
            pts = [(ox + a * np.cos(b), oy - a * np.sin(b)) for a, b in zip(rr, t)]
            draw.line([*pts, pts[0]], fill=colour, width=2)
        label = f"{name}:{u} r={s['preferred_radius'][u]:.0f} sel={sel:.1f}"
        draw.text(((k % 4) * cell + 4, (k // 4) * (cell + 12) + 2), label, fill="black")
    base = img.height - 12
    draw.text((4, base), title, fill=(120, 120, 120))
    x = 4 + int(draw.textlength(title)) + 12
    keys = [("arc, preferred radius", ARC), ("straight line", LINE)]
    keys += [("best corner (any angle, size)", CORNER)] if len(corner_t) else []
    for text, colour in keys:
        draw.line([x, base + 5, x + 16, base + 5], fill=colour, width=2)
        draw.text((x + 20, base), text, fill="black")
        x += 20 + int(draw.textlength(text)) + 12
    return np.asarray(img, dtype=np.uint8).copy()
