"""Curve-detector census by radial tuning (after Cammarata et al. 2020, "Curve Detectors").

Each unit of a layer is shown anti-aliased arcs at every orientation (72 x 5° by default) and a few
radii, centred on the receptive field of ONE output position, plus straight-line controls, in both
polarities (`curve_stimuli.py` has the geometry and its orientation convention). Only that position
is read: a max over a neighbourhood broadens tuning and inflates counts (docs/DESIGN.md, "Probes").

Which position: with TF-"SAME" padding the odd pixel goes to the end, so the receptive field of
index H//2 sits half a layer stride right/below the image centre (7.5 px at mixed3a for 64 px).
So per layer we measure receptive-field centres as the |gradient| centroid of a few candidate
positions on noise images and read the one nearest the image centre; stimuli are centred on the
image centre, one batch for all layers. Geometry is architectural: it is measured on the model's
`geometric_copy` (positive weights), so every model of one architecture, the random-init control
included, is read at the same positions, also where a field is larger than the image and its
centroid would otherwise follow the weights (and the control's cached census would not apply).

Why so many criteria (all in conf/probes/curves.yaml): a lenient criterion "finds" curve detectors
at random init and in models that never saw a curve. A unit counts only if its tuning is peaked
(peak/mean, circular variance, half-max width), it prefers arcs to every straight line, its preferred
orientation is stable across the radii it responds to, it prefers a middle radius (not the smallest
or largest: those are edge/blob or line-like responses).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.facts.keys import (
    COVERAGE_BINS,
    DETECTORS,
    DETECTORS_RANDOM_INIT,
    IS_CURVE_DETECTOR,
    ORIENTATION_COVERAGE,
    PREFERRED_ORIENTATION,
    UNITS_TABLE,
    orientation_bin,
)
from harness.models.hooks import capture, eval_mode, forward_until
from harness.probes import control_cache
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.curve_crop import Crop, plan_crop, verify
from harness.probes.curve_plot import tuning_plot
from harness.probes.curve_stimuli import Stimuli, make_stimuli
from harness.probes.curve_tuning import tuning_stats
from harness.probes.probe_set import probe_layout

log = logging.getLogger(__name__)
# The per-unit table's statistic columns, after layer, unit and is_curve_detector.
TABLE_COLUMNS = (PREFERRED_ORIENTATION, "preferred_radius", "selectivity", "circular_variance", "curve_over_line",
                "curve_over_corner", "half_max_width", "peak")  # fmt: skip


def _rf_centre(profile: torch.Tensor) -> float:
    """Receptive-field centre along one axis from a |gradient| profile: the midpoint of its support when that
    lies inside the image (geometric, independent of the weights), else its centroid (support clipped)."""
    support = torch.nonzero(profile > profile.max() * 1e-6)[:, 0]
    lo, hi = int(support[0]), int(support[-1])
    if lo > 0 and hi < len(profile) - 1:
        return (lo + hi) / 2
    return float((profile * torch.arange(len(profile), dtype=profile.dtype)).sum() / profile.sum())


def centre_positions(
    model: nn.Module,
    layers: Sequence[str],
    size: int,
    device: torch.device,
    seed: int = 0,
    rf_sizes: dict[str, int] | None = None,
) -> dict[str, tuple[int, int, float]]:
    """Layer -> (row, col, offset px): the output index whose receptive field is centred nearest the image centre.

    Receptive fields come from |d(sum of pre-ReLU channels at the index) / d input| over 4 noise images, for
    indices H//2 - 2 ... H//2 + 1. Layers without a spatial map are left out.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, size, size, generator=gen).to(device).requires_grad_(True)
    centre = (size - 1) / 2
    out = {}
    with torch.enable_grad(), eval_mode(model), capture(model, layers, detach=False, pre_relu=True) as cache:
        forward_until(model, x, layers)  # no need for the layers after the deepest one
        for name in layers:
            act = cache[name]
            if act.dim() != 4:  # a pooled / linear layer has no receptive-field centre: skipped (run says so)
                continue
            h, w = act.shape[-2:]
            best = {"row": (np.inf, h // 2), "col": (np.inf, w // 2)}
            for d in range(-2, 2):
                i, j = min(max(h // 2 + d, 0), h - 1), min(max(w // 2 + d, 0), w - 1)
                (g,) = torch.autograd.grad(act[:, :, i, j].sum(), x, retain_graph=True)
                g = g.abs().sum((0, 1)).double().cpu()
                if g.sum() <= 0:
                    continue
                for axis, idx, prof in (("row", i, g.sum(1)), ("col", j, g.sum(0))):
                    best[axis] = min(best[axis], (abs(_rf_centre(prof) - centre), idx))
                    if rf_sizes is not None:  # extent of the gradient's support, in px (the image clips it)
                        support = torch.nonzero(prof > prof.max() * 1e-6)[:, 0]
                        extent = int(support[-1] - support[0]) + 1
                        rf_sizes[name] = max(rf_sizes.get(name, 0), extent)
            out[name] = (best["row"][1], best["col"][1], float(np.hypot(best["row"][0], best["col"][0])))
    return out


def geometric_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose gradients reach every input pixel its architecture connects: positive averaging
    weights (1 / fan-in), zero biases, unit norm scales, fresh norm statistics.

    Why: receptive fields measured on the real weights shrink where a residual branch starts at zero (timm's
    ``zero_init_last``) or a unit is dead; choosing layers by receptive field must not depend on the init.
    """
    import copy

    geo = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in geo.named_parameters():
            if param.dim() > 1:
                param.fill_(1.0 / max(1, param[0].numel()))
            else:
                param.fill_(1.0 if name.endswith("weight") or "scale" in name or "gamma" in name else 0.0)
        for name, buf in geo.named_buffers():
            if name.endswith("running_mean"):
                buf.zero_()
            elif name.endswith("running_var"):
                buf.fill_(1.0)
    return geo


def stimulus_responses(
    model: nn.Module, layers: Sequence[str], images: torch.Tensor, positions: dict, device, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Layer -> [N stimuli, C] post-ReLU responses at the layer's chosen position, one pass for all layers."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.no_grad(), eval_mode(model), capture(model, layers) as cache:
        for start in range(0, len(images), batch_size):
            forward_until(model, probe_layout(images[start : start + batch_size].to(device)), layers)
            for name in layers:
                i, j, _ = positions[name]
                # clone: the [N, C] slice would otherwise keep the whole [N, C, H, W] map alive (GBs at 224 px)
                parts[name].append(cache[name][:, :, i, j].float().cpu().clone())
    return {name: torch.cat(p).double().numpy() for name, p in parts.items()}


def _angles_ok(angles) -> bool:
    """A non-empty list of numbers strictly between 0 and 180 degrees."""
    try:
        return len(angles) > 0 and all(0 < float(a) < 180 for a in angles)
    except (TypeError, ValueError):
        return False


class CurveCensus(Probe):
    """Counts curve detectors per layer (and at random init); per-unit tuning table and a polar plot.

    Usage: ``CurveCensus(layers=["mixed3a", "mixed3b"]).run(ctx).scalars["mixed3b/detectors"]``
    """

    name = "curves"
    cheap = False

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        orientations: int = 72,
        radii: Sequence[float] = (0.05, 0.08, 0.125, 0.2, 0.32, 0.5),
        arc_span: float = 120.0,
        stroke: float = 2.0,
        min_selectivity: float = 3.0,
        max_circular_variance: float = 0.5,
        min_curve_over_line: float = 2.0,
        corner_angles: Sequence[float] = (45.0, 60.0, 90.0),
        min_curve_over_corner: float = 1.0,
        half_max_width: Sequence[float] = (30.0, 150.0),
        stable_tolerance: float = 30.0,
        stable_min_frac: float = 0.5,
        mid_radius: bool = True,
        coverage_bins: int = COVERAGE_BINS,
        random_init: bool = True,
        plot_units: int = 8,
        crop: bool = True,
        cache_random_init: bool = True,
        large_image_px: int | None = 128,
        large_image_orientations: int | None = 36,
    ) -> None:
        super().__init__(layers)
        if orientations < 36 or len(radii) < 3:
            raise ConfigError(f"curves needs orientations >= 36 and >= 3 radii, got {orientations}, {list(radii)}")
        if large_image_orientations is not None and large_image_orientations < 36:
            raise ConfigError(f"curves.large_image_orientations must be >= 36 or null, got {large_image_orientations}")
        if min_curve_over_corner < 0:
            raise ConfigError(f"probes.curves.min_curve_over_corner must be >= 0, got {min_curve_over_corner}")
        if not _angles_ok(corner_angles):
            raise ConfigError(
                "probes.curves.corner_angles must be a non-empty list of opening angles in degrees, each strictly "
                f"between 0 and 180 (180 is the line control), got {list(corner_angles or [])}"
            )
        self.corner_angles, self.min_coc = [float(a) for a in corner_angles], float(min_curve_over_corner)
        self.large_image_px, self.large_image_orientations = large_image_px, large_image_orientations
        self.orientations, self.radii, self.arc_span, self.stroke = orientations, list(radii), arc_span, stroke
        self.min_selectivity, self.max_cv, self.min_col = min_selectivity, max_circular_variance, min_curve_over_line
        self.width_range, self.stable_tolerance = tuple(half_max_width), stable_tolerance
        self.stable_min_frac = stable_min_frac
        self.mid_radius, self.coverage_bins = mid_radius, coverage_bins
        self.random_init, self.plot_units = random_init, plot_units
        self.crop, self.cache_random_init = crop, cache_random_init
        self._stimuli: dict[int, Stimuli] = {}  # per image size: drawing them costs more than showing them

    def orientations_at(self, size: int) -> int:
        """Arc orientations shown at this image size: `large_image_orientations` above `large_image_px`.

        Why: the census's cost is stimuli x one pass through the network, and a 224 px pass costs ~12x a 64 px
        one. At 36 orientations (10 deg steps) there are half the stimuli (lines too: their orientations are the
        arcs' below 180 deg), which is what fits resnet18's default round at 224 px into the 60 s probing budget
        (docs/probes.md, "Large images"). Every criterion is in degrees and stays meaningful at 10 deg steps; on a
        trained 64 px model, 36 and 72 orientations agreed on 5 of 8 detectors and ranked every tuning statistic
        alike (Spearman 0.89-0.98). Set `large_image_orientations: null` for the full 72 at any size.
        """
        big = self.large_image_px is not None and self.large_image_orientations is not None
        return self.large_image_orientations if big and size > self.large_image_px else self.orientations

    def stimuli(self, size: int) -> Stimuli:
        if size not in self._stimuli:
            self._stimuli[size] = make_stimuli(
                size, self.orientations_at(size), [f * size for f in self.radii], self.arc_span, self.stroke,
                corner_angles=self.corner_angles,
            )
        return self._stimuli[size]

    def is_detector(self, s: dict[str, np.ndarray]) -> np.ndarray:
        """The fixed criterion: every test must pass."""
        n_r = s["peak_per_radius"].shape[0]
        responsive = s["peak_per_radius"] >= self.stable_min_frac * s["peak"]
        ok = (s["peak"] > 0) & (s["selectivity"] >= self.min_selectivity)
        ok &= (s["circular_variance"] <= self.max_cv) & (s["curve_over_line"] >= self.min_col)
        ok &= s["curve_over_corner"] >= self.min_coc
        ok &= (s["half_max_width"] >= self.width_range[0]) & (s["half_max_width"] <= self.width_range[1])
        ok &= ~(responsive & (s["orientation_shift"] > self.stable_tolerance)).any(0)
        if self.mid_radius:
            ok &= (s["preferred_radius_index"] > 0) & (s["preferred_radius_index"] < n_r - 1)
        return ok

    def settings(self) -> dict:
        """What the census depends on besides the model, image size and layers (the random-init cache key)."""
        keys = ("orientations", "radii", "arc_span", "stroke", "min_selectivity", "max_cv", "min_col", "width_range",
                "stable_tolerance", "stable_min_frac", "mid_radius", "large_image_px",
                "large_image_orientations", "corner_angles", "min_coc")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def census(
        self, ctx: ProbeContext, model: nn.Module, layers: list[str], positions: dict, crop: Crop | None = None
    ) -> dict[str, dict]:
        """Layer -> tuning stats plus "detector" for one model; with `crop`, stimuli shown cropped to it."""
        size = ctx.probe_set.images.shape[-1]
        stim = self.stimuli(size)
        images, positions = (crop(stim.images), crop.positions) if crop else (stim.images, positions)
        batch = ctx.images_per_pass(*images.shape[-2:])
        resp = stimulus_responses(model, layers, images, positions, ctx.device, batch)
        out = {}
        for name in layers:
            out[name] = s = tuning_stats(resp[name], stim)
            s["detector"] = self.is_detector(s)
        return out

    def min_rf(self, size: int) -> float:
        """Smallest receptive field (px) a default layer needs: the diameter of the third-smallest arc radius.

        Why: a unit passes ``mid_radius`` only when it prefers a radius strictly inside the tested range, so its
        receptive field must hold arcs larger than the second radius; smaller fields only see arc fragments.
        """
        radii = sorted(self.radii)
        return 2 * radii[min(2, len(radii) - 1)] * size

    def check_images(self, size: int, seed: int) -> torch.Tensor:
        """What a crop is checked on (`curve_crop.verify`): 4 noise images and 4 stimuli spread over the set."""
        stim = self.stimuli(size)
        noise = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(seed))
        pick = torch.linspace(0, len(stim.images) - 1, 4).round().long()
        return torch.cat([noise, stim.images[pick]])

    def control_census(self, ctx: ProbeContext, layers: list[str], positions: dict, crop: Crop | None) -> tuple:
        """({layer: detector units} of a fresh random init, how it was obtained), from the cache when it has it."""
        control = ctx.random_init_model()
        size = ctx.probe_set.images.shape[-1]
        key = control_cache.cache_key(
            control, probe=self.name, size=size, layers=layers, device=ctx.device.type,
            positions={k: v[:2] for k, v in positions.items()},  # the indices read; not the float offsets
            crop=[crop.top, crop.bottom, crop.left, crop.right] if crop else None, settings=self.settings(),
        )  # fmt: skip
        if self.cache_random_init and (found := control_cache.load(self.name, key)) is not None:
            return found, f"cached census of this architecture and seed ({control_cache.cache_dir()}, key {key})"
        if crop and not verify(control, crop, positions, self.check_images(size, ctx.seed), ctx.device):
            crop = None  # its max pools route differently and the window misses part of the field: full images
        found = {name: np.flatnonzero(s["detector"]).tolist() for name, s in
                 self.census(ctx, control, layers, positions, crop).items()}  # fmt: skip
        if self.cache_random_init and (path := control_cache.save(self.name, key, found)) is not None:
            return found, f"computed{' (cropped)' if crop else ''}; cached in {path}"
        return found, f"computed{' (cropped)' if crop else ''}"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        size = ctx.probe_set.images.shape[-1]
        geometric = geometric_copy(ctx.model)  # positions and fields from the architecture, not from its weights
        rf_sizes: dict[str, int] = {}
        positions = centre_positions(geometric, self.target_layers(ctx), size, ctx.device, ctx.seed, rf_sizes)
        chosen_by_rf = ""
        if self.layers is None:  # default: the run's layers whose receptive field fits the stimuli
            fits = {n: p for n, p in positions.items() if rf_sizes.get(n, 0) >= self.min_rf(size)}
            chosen_by_rf = (f"layers with a receptive field >= {self.min_rf(size):.0f} px (twice the third arc "
                            f"radius): {', '.join(fits) or 'none'}; receptive fields (px): {rf_sizes}")  # fmt: skip
            log.info("curves: %s", chosen_by_rf)
            if not fits:  # a small model: census every layer rather than none, and say so
                chosen_by_rf = (
                    f"no layer has a receptive field >= {self.min_rf(size):.0f} px (twice the third arc "
                    f"radius); using all: {', '.join(positions)}; receptive fields (px): {rf_sizes}"
                )
                log.info("curves: %s", chosen_by_rf)
            positions = fits or positions
        layers = list(positions)
        if not layers:
            raise ConfigError(f"curves needs conv feature maps; none among {self.target_layers(ctx)}")
        crop = None
        if self.crop:
            check = self.check_images(size, ctx.seed)
            crop = plan_crop(ctx.model, geometric, positions, size, check, ctx.device, ctx.seed)
        # The control first: it is the part the cache keeps, so a census cut short by probing.probe_timeout_s
        # still leaves it for the next round (the other order would never fill the cache).
        control = None
        if self.random_init and ctx.make_model is not None:
            control = self.control_census(ctx, layers, positions, crop)
        stats = self.census(ctx, ctx.model, layers, positions, crop)
        shown = self.orientations_at(size)
        result = ProbeResult(info={
            "centre_index": {k: [v[0], v[1]] for k, v in positions.items()},
            "rf_centre_offset_px": {k: round(v[2], 2) for k, v in positions.items()},
            "stimuli": f"{shown} orientations x radii {[round(f * size, 1) for f in self.radii]} px, "
                       f"{self.arc_span} deg arcs, {self.stroke} px stroke, both polarities, + chord lines, + corners "
                       f"opening {self.corner_angles} deg",
            "crop": crop.describe(size) if crop else "full images" + ("" if self.crop else " (crop disabled)"),
        })  # fmt: skip
        if skipped := [n for n in self.target_layers(ctx) if n not in positions]:
            result.info["skipped_layers"] = skipped  # no spatial map, or (default layers) too small a field
        if chosen_by_rf:
            result.info["layers"] = chosen_by_rf
        if shown != self.orientations:
            result.info["orientations"] = (
                f"{shown} (not {self.orientations}): the images are {size} px, above large_image_px="
                f"{self.large_image_px}; probes.curves.large_image_orientations=null shows {self.orientations}"
            )
            log.info("curves: %s orientations", result.info["orientations"])
        if control is not None:
            found, result.info["random_init"] = control
            for name in layers:
                result.scalars[f"{name}/{DETECTORS_RANDOM_INIT}"] = float(len(found[name]))
        else:
            why = "disabled in config" if not self.random_init else "ctx.make_model is None"
            result.info["random_init"] = f"skipped: {why}"
        rows = []
        for name, s in stats.items():
            det = s["detector"]
            bins = {orientation_bin(p, self.coverage_bins) for p in s["preferred_orientation"][det].tolist()}
            result.scalars[f"{name}/{DETECTORS}"] = float(det.sum())
            result.scalars[f"{name}/{ORIENTATION_COVERAGE}"] = len(bins) / self.coverage_bins
            for u in range(len(det)):
                rows.append({"layer": name, "unit": u, IS_CURVE_DETECTOR: bool(det[u]),
                             **{k: float(s[k][u]) for k in TABLE_COLUMNS}})  # fmt: skip
        counts = {name: int(s["detector"].sum()) for name, s in stats.items()}
        result.info["curve_cluster_layer"] = max(counts, key=counts.get) if any(counts.values()) else None
        result.tables[UNITS_TABLE] = rows
        result.images["tuning"] = tuning_plot(stats, self.stimuli(size), self.plot_units)
        return result
