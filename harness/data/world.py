"""The procedural stimulus world: RGB images whose class is a geometric shape.

Why procedural: every image comes with exact per-pixel concept masks (curve, line, corner,
...) and attributes (curvature, orientation) for dissection and linear probes, the class list
can drop curves to build the no-curve control world, and any size of data set is one seed away.

Geometry lives in `shapes.py` and rasterisation in `render.py`; this file draws the random
parameters, places the shapes and assembles the batch.

Attributes (all float32, [N] unless noted):
  curvature    1/px. Arcs: 1/radius; closed curves and spirals: 1/mean radius; waves: peak
               curvature; lines and corners: 0; texture: NaN.
  orientation  degrees in [0, 360): the random counter-clockwise (on screen) rotation applied
               to the canonical shape (see `shapes.py` for what 0 means per class). Lines and
               waves repeat every 180 deg. NaN for texture.
  radius       px: arcs' radius, mean radius of closed curves and spirals; NaN otherwise.
  thickness    stroke width in px (also drawn, and recorded, for texture images).
  x, y         centre of the shape's bounding box in px (col, row); NaN for texture.
  stroke_rgb, background_rgb  [N, 3] colours in [0, 1] before noise.

Concept masks (`CONCEPTS`, bool [N, K, H, W]): a pixel is set iff the stroke's anti-aliased
coverage is >= 0.5. `corner` is a disc of radius 4 px (x scale) around each corner's vertex.
`texture` is the whole image for the `texture` class (which alone carries the strong mottled
texture) and empty otherwise; the weak background noise on every image is not a concept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

import harness.data.render as render  # the module itself, not the package: harness.data imports this file
from harness.data.shapes import BUILDERS, place, resample
from harness.facts.errors import ConfigError

CLASSES: tuple[str, ...] = (
    "arc_high",
    "arc_low",
    "line",
    "corner",
    "closed_curve",
    "wave",
    "spiral",
    "texture",
)
# Classes a world may use beyond the default ones (the default world, and so its images, never changes):
# the curvature ladder of `conf/data/world_curvature.yaml`, arcs that differ only in radius (shapes.py).
EXTRA_CLASSES: tuple[str, ...] = ("arc_r4", "arc_r7", "arc_r12", "arc_r20")
ALL_CLASSES: tuple[str, ...] = CLASSES + EXTRA_CLASSES
CONCEPTS: tuple[str, ...] = ("curve", "line", "corner", "shape", "texture")

_CORNER_RADIUS = 4.0  # px at 64 px
_CHUNK_AT_64 = 512  # images per RNG chunk at 64 px; scaled by pixel count for other sizes


@dataclass
class WorldBatch:
    """Images, labels, concept masks and attributes of `World.generate`.

    Usage: ``b = World().generate(64, seed=0); b.images.shape == (64, 3, 64, 64)``
    """

    images: torch.Tensor  # [N, 3, H, W] uint8
    labels: torch.Tensor  # [N] int64 index into World.classes
    masks: torch.Tensor | None  # [N, len(CONCEPTS), H, W] bool, or None
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class World:
    """A seeded generator of shape images with concept masks and geometric attributes.

    Usage: ``World(classes=("line", "corner"), image_size=64).generate(256, seed=0)``

    Knobs (sizes in px at 64 px, scaled with image_size): `thickness` stroke width range
    (never below 1 px), `noise` amplitude of the weak background texture on every image,
    `texture_strength` std of the texture class's mottled texture, `min_contrast` minimum
    luminance difference between stroke and background (<= 0.5). Nuisances (off by default; `data=world_hard`):
    `clutter` short distractor strokes per image (2-5 px at 64 px, below the line class's length, in a colour of
    their own, under the shape), `occlusion` the fraction of images with a background-coloured square (20-35% of
    the side) over the shape; occluded pixels leave the concept masks.
    """

    def __init__(
        self,
        classes: Sequence[str] = CLASSES,
        image_size: int = 64,
        thickness: tuple[float, float] = (1.0, 3.0),
        noise: float = 0.05,
        texture_strength: float = 0.25,
        min_contrast: float = 0.3,
        clutter: int = 0,
        occlusion: float = 0.0,
    ) -> None:
        classes = (classes,) if isinstance(classes, str) else tuple(str(c) for c in classes)
        valid = ", ".join(ALL_CLASSES)
        if not classes:
            raise ConfigError(f"world needs at least one class; valid: {valid}")
        unknown = [c for c in classes if c not in ALL_CLASSES]
        if unknown:
            raise ConfigError(f"unknown world class {unknown[0]!r}; valid: {valid}")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"duplicate world class in {list(classes)}; valid: {valid}")
        if int(image_size) < 16:
            raise ConfigError(f"image_size must be >= 16, got {image_size}")
        lo, hi = float(thickness[0]), float(thickness[1])
        if not 0 < lo <= hi:
            raise ConfigError(f"thickness must be (lo, hi) with 0 < lo <= hi, got {tuple(thickness)}")
        if noise < 0 or texture_strength < 0:
            raise ConfigError("noise and texture_strength must be >= 0")
        if not 0 <= min_contrast <= 0.5:
            raise ConfigError(f"min_contrast must be in [0, 0.5], got {min_contrast}")
        self.classes: tuple[str, ...] = classes
        self.concepts: tuple[str, ...] = CONCEPTS
        self.image_size = int(image_size)
        self.scale = self.image_size / 64.0
        self.thickness = (max(1.0, lo * self.scale), max(1.0, hi * self.scale))
        self.noise = float(noise)
        self.texture_strength = float(texture_strength)
        self.min_contrast = float(min_contrast)
        if isinstance(clutter, bool) or int(clutter) != clutter or clutter < 0 or not 0 <= occlusion <= 1:
            raise ConfigError(f"clutter must be an integer >= 0 and occlusion a fraction in [0, 1], got {clutter!r}, "
                              f"{occlusion!r}")  # fmt: skip
        self.clutter, self.occlusion = int(clutter), float(occlusion)
        # Dense enough for sub-pixel accurate strokes; coarser for big (thick-stroked) images.
        self.spacing = 0.5 * max(1.0, self.scale) ** 0.5
        self.chunk = max(8, int(_CHUNK_AT_64 / self.scale**2))
        self.blotch_up = render.interp_matrix(6, self.image_size)
        self.texture_up = render.interp_matrix(self.image_size // 4, self.image_size, "bicubic")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def generate(self, n: int, seed: int, with_masks: bool = True) -> WorldBatch:
        """`n` images with balanced, shuffled labels; identical output for identical (n, seed).

        Why per-chunk generators: randomness is drawn chunk by chunk from generators seeded by
        (seed, chunk index), so memory stays bounded and nothing touches the global RNG; the
        result depends only on the world's settings, `n` and `seed` (not on threads).
        """
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        size = self.image_size
        gen = torch.Generator().manual_seed(int(seed))
        labels = (torch.arange(n) % self.num_classes)[torch.randperm(n, generator=gen)]
        images = torch.empty(n, 3, size, size, dtype=torch.uint8)
        masks = torch.empty(n, len(CONCEPTS), size, size, dtype=torch.bool) if with_masks else None
        parts = []
        for k, start in enumerate(range(0, n, self.chunk)):
            end = min(n, start + self.chunk)
            chunk_masks = masks[start:end] if masks is not None else None
            gen_k = torch.Generator().manual_seed(_chunk_seed(seed, k))
            parts.append(self._chunk(labels[start:end], gen_k, images[start:end], chunk_masks))
        keys = ("curvature", "orientation", "radius", "thickness", "x", "y", "stroke_rgb", "background_rgb")
        attrs = {key: torch.cat([p[key] for p in parts]) if parts else torch.zeros(0) for key in keys}
        if not parts:
            attrs["stroke_rgb"] = attrs["background_rgb"] = torch.zeros(0, 3)
        return WorldBatch(images, labels, masks, attrs)

    def _chunk(
        self, labels: torch.Tensor, gen: torch.Generator, out: torch.Tensor, masks: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Render one chunk into `out` (uint8) and `masks` (bool); return its attributes."""
        m, size = labels.shape[0], self.image_size
        lo, hi = self.thickness
        thickness = lo + (hi - lo) * torch.rand(m, generator=gen)
        half = thickness / 2
        stroke_rgb, bg_rgb = render.random_colours(m, self.min_contrast, gen)
        attrs = {k: torch.full((m,), float("nan")) for k in ("curvature", "orientation", "radius", "x", "y")}
        attrs.update(thickness=thickness, stroke_rgb=stroke_rgb, background_rgb=bg_rgb)
        cols, rows, images, channels, vertices, vertex_images = [], [], [], [], [], []
        for c, name in enumerate(self.classes):
            idx = (labels == c).nonzero().squeeze(1)
            if name == "texture" or idx.numel() == 0:
                continue
            sample = BUILDERS[name](idx.numel(), self.scale, gen)
            theta = 360.0 * torch.rand(idx.numel(), generator=gen)
            pts, valid = resample(sample.points, self.spacing)
            pts, origin = place(pts, theta, half[idx] + 1.0, size, gen)
            attrs["curvature"][idx] = sample.curvature
            attrs["radius"][idx] = sample.radius
            attrs["orientation"][idx] = theta
            centre = (pts.amin(1) + pts.amax(1)) / 2
            attrs["x"][idx], attrs["y"][idx] = centre[:, 0], centre[:, 1]
            cols.append(pts[..., 0][valid])
            rows.append(pts[..., 1][valid])
            images.append(idx[:, None].expand_as(valid)[valid])
            # One canvas channel per stroke concept: 0 = curve, 1 = line (all in 0 without masks).
            channels.append(torch.full((images[-1].numel(),), int(masks is not None and not sample.curved)))
            if name == "corner":
                vertices.append(origin)
                vertex_images.append(idx)
        image = _cat(images, torch.long)
        n_channels = 2 if masks is not None else 1
        cov = render.splat_strokes(
            _cat(cols), _cat(rows), image, _cat(channels, torch.long), half[image], m, n_channels, size, hi / 2
        )
        stroke_cov = torch.maximum(cov[:, 0], cov[:, 1]) if masks is not None else cov[:, 0]
        # Compose in 8-bit units offset by 0.5, so the final truncating cast rounds.
        img = render.background(bg_rgb * 255 + 0.5, self.noise * 255, self.blotch_up, gen)
        is_texture = labels == self.classes.index("texture") if "texture" in self.classes else None
        if is_texture is not None and bool(is_texture.any()):
            k = int(is_texture.sum())
            img[is_texture] += render.strong_texture(k, self.texture_strength * 255, self.texture_up, gen)
        if self.clutter:
            img.lerp_(*self._clutter(m, gen))
        img.lerp_((stroke_rgb * 255 + 0.5)[:, :, None, None].expand_as(img), stroke_cov[:, None])
        hidden = self._occluder(m, gen) if self.occlusion > 0 else None
        if hidden is not None:
            img = torch.where(hidden[:, None], (bg_rgb * 255 + 0.5)[:, :, None, None], img)
        out.copy_(img.clamp_(0.0, 255.0))
        if masks is not None:
            torch.ge(cov, 0.5, out=masks[:, 0:2])
            torch.ge(stroke_cov, 0.5, out=masks[:, 3])
            masks[:, 2] = False
            if vertices:
                radius = _CORNER_RADIUS * self.scale
                masks[torch.cat(vertex_images), 2] = render.disc_mask(torch.cat(vertices), radius, size)
            masks[:, 4] = is_texture[:, None, None] if is_texture is not None else False
            if hidden is not None:
                masks[:, :4] &= ~hidden[:, None]
        return attrs

    def _clutter(self, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(colour [m, 3, 1, 1] in 8-bit units, coverage [m, 1, H, W]) of `clutter` short random segments."""
        size, k = self.image_size, self.clutter
        length = (2.0 + 3.0 * torch.rand(m * k, generator=gen)) * self.scale
        theta = torch.rand(m * k, generator=gen) * torch.pi
        start = torch.rand(m * k, 2, generator=gen) * (size - 1)
        t = torch.linspace(0, 1, max(2, int(5 * self.scale) + 1))
        step = length[:, None] * torch.stack([theta.cos(), theta.sin()], 1)  # [m*k, 2]: each segment's extent
        pts = start[:, None] + t[None, :, None] * step[:, None]  # [m*k, points, 2]
        pts = pts.clamp(0, size - 1)
        image = torch.arange(m).repeat_interleave(k)[:, None].expand(-1, len(t)).reshape(-1)
        half = torch.full((m,), max(0.5, self.thickness[0] / 2))
        cov = render.splat_strokes(pts[..., 0].reshape(-1), pts[..., 1].reshape(-1), image,
                                   torch.zeros_like(image), half[image], m, 1, size, float(half[0]))  # fmt: skip
        colour, _ = render.random_colours(m, self.min_contrast, gen)
        return (colour * 255 + 0.5)[:, :, None, None].expand(m, 3, size, size), cov

    def _occluder(self, m: int, gen: torch.Generator) -> torch.Tensor:
        """[m, H, W] bool: a square of 20-35% of the side at a random place, on `occlusion` of the images."""
        size = self.image_size
        on = torch.rand(m, generator=gen) < self.occlusion
        side = ((0.20 + 0.15 * torch.rand(m, generator=gen)) * size).round()
        x0, y0 = (torch.rand(m, generator=gen) * (size - side)), (torch.rand(m, generator=gen) * (size - side))
        grid = torch.arange(size, dtype=torch.float32)
        inx = (grid[None] >= x0[:, None]) & (grid[None] < x0[:, None] + side[:, None])
        iny = (grid[None] >= y0[:, None]) & (grid[None] < y0[:, None] + side[:, None])
        return on[:, None, None] & iny[:, :, None] & inx[:, None, :]


def _cat(parts: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)


def _chunk_seed(seed: int, chunk: int) -> int:
    """A well-mixed 63-bit seed per (seed, chunk) so neighbouring seeds give unrelated chunks."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + (chunk + 1) * 0xBF58476D1CE4E5B9) % (1 << 64)
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) % (1 << 64)
    return (x ^ (x >> 29)) % (1 << 63)
