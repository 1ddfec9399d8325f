"""Per-unit radial tuning statistics of the `curves` probe, from its responses to arcs, lines and corners.

Why a file of its own: the statistics are pure numpy on a response matrix, independent of how the census picks
positions, crops and controls (`curves.py`), and testable on hand-written responses. The ratios against the
controls (`curve_over_line`, `curve_over_corner`) divide the peak arc response at the preferred radius by the best
response to any control stimulus, and are capped at 1000 where a unit answers no control at all.
"""

from __future__ import annotations

import numpy as np

from harness.probes.curve_stimuli import Stimuli


def tuning_stats(resp: np.ndarray, stim: Stimuli) -> dict[str, np.ndarray]:
    """Per-unit radial tuning statistics from [N stimuli, C] responses (arrays of length C, tuning [K, C])."""
    n_r, n_k = len(stim.radii), len(stim.orientations)
    arcs = resp[: stim.n_arcs].reshape(2, n_r, n_k, -1).max(0)  # [R, K, C], max over polarity
    end_lines = stim.n_arcs + stim.n_lines
    lines = resp[stim.n_arcs : end_lines].reshape(2, n_r, len(stim.line_orientations), -1).max(0).max(0)  # [L, C]
    line_peak = lines.max(0)
    corner_tuning, corner_peak = np.zeros((0, resp.shape[1])), None  # [Kc, C]; None: no corners were shown
    if stim.n_corners:  # the best corner (any polarity, size, opening angle) per bisector orientation
        corners = resp[end_lines : end_lines + stim.n_corners]
        corner_tuning = corners.reshape(-1, len(stim.corner_orientations), resp.shape[1]).max(0)
        corner_peak = corner_tuning.max(0)
    peak_r = arcs.max(1)  # [R, C]
    pref_r = peak_r.argmax(0)
    tuning = np.take_along_axis(arcs, pref_r[None, None, :], 0)[0]  # [K, C] at the preferred radius
    peak, pref_k, mean = tuning.max(0), tuning.argmax(0), tuning.mean(0)
    theta = np.deg2rad(stim.orientations.double().numpy())[:, None]
    total = tuning.sum(0)
    resultant = np.hypot((tuning * np.cos(theta)).sum(0), (tuning * np.sin(theta)).sum(0))
    step = 360.0 / n_k
    above = tuning >= peak / 2  # contiguous run around the peak, walked both ways round the circle
    fwd = np.cumprod(np.take_along_axis(above, (pref_k + np.arange(n_k)[:, None]) % n_k, 0), 0).sum(0)
    bwd = np.cumprod(np.take_along_axis(above, (pref_k - np.arange(n_k)[:, None]) % n_k, 0), 0).sum(0)
    pref_deg = pref_k * step
    shift = np.abs((arcs.argmax(1) * step - pref_deg + 180.0) % 360.0 - 180.0)  # [R, C] drift per radius
    with np.errstate(divide="ignore", invalid="ignore"):
        selectivity = np.where(mean > 0, peak / mean, 0.0)
        cv = np.where(total > 0, 1.0 - resultant / total, 1.0)
        col = np.where(line_peak > 0, peak / line_peak, np.where(peak > 0, np.inf, 0.0))
        coc = (np.full_like(peak, np.inf) if corner_peak is None  # no corners shown: the criterion cannot bite
               else np.where(corner_peak > 0, peak / corner_peak, np.where(peak > 0, np.inf, 0.0)))  # fmt: skip
    return {
        "peak": peak, "preferred_orientation": pref_deg, "preferred_radius_index": pref_r,
        "preferred_radius": stim.radii.double().numpy()[pref_r], "selectivity": selectivity,
        "circular_variance": cv, "curve_over_line": np.minimum(col, 1e3),  # capped: no line response at all
        "curve_over_corner": np.minimum(coc, 1e3), "corner_tuning": corner_tuning,
        "half_max_width": np.minimum(fwd + bwd - 1, n_k) * step, "peak_per_radius": peak_r,
        "orientation_shift": shift, "tuning": tuning, "line_tuning": lines,
    }  # fmt: skip
