"""Network Dissection (Bau et al. 2017): which units are detectors of which concept.

Per unit: threshold its activation at its top `quantile` (0.995 = top 0.5%) over every position of
every probe image, upsample each activation map bilinearly to the image size, binarise with
`> threshold` (as NetDissect), and score each concept by IoU with the concept masks, intersection
and union summed over the whole probe set. A unit detects its best concept when that IoU >=
`iou_threshold` (0.04 in the paper).

Why sparse: bilinear upsampling is a convex combination of neighbouring activations, so a map
can exceed the threshold only if its raw map does. By construction that is true for few (image,
unit) pairs, so only those maps are upsampled, and of those only the rows that can pass are upsampled
along x and compared with the masks -- the cost follows the top 0.5% of activations, not units x
images x pixels. Likewise only the pixels inside a region are
looked up in the masks, as runs along image rows (`ConceptMasks`), not a units x pixels x concepts
product. Chunks of pairs bound the memory. Few, large tensor operations: no per-image Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.facts.keys import DETECTOR_UNITS, POLYSEMANTIC_UNITS, UNIQUE_CONCEPTS
from harness.probes.activations import per_unit, upper_quantile
from harness.probes.base import Probe, ProbeContext, ProbeResult


def resize_matrix(src: int, dst: int) -> torch.Tensor:
    """[dst, src] weights of PyTorch's linear interpolation (align_corners=False) from src to dst samples.

    Why: bilinear upsampling is separable, ``up = Ry @ map @ Rx.T``; two small matmuls are several
    times faster on CPU than `F.interpolate` and give the same values (to float rounding).
    """
    eye = torch.eye(src).unsqueeze(0)  # [1, src, src]: each row a unit impulse
    return F.interpolate(eye, size=dst, mode="linear", align_corners=False)[0].T.contiguous()


_PREFIX_BYTES = 1 << 30  # row prefix sums up to this size (512 images x 224 px x 5 concepts: 258 MB); else gather


@dataclass(frozen=True)
class ConceptMasks:
    """The probe set's concept masks, indexed once per round for every layer's `concept_iou`.

    Why: a unit's thresholded region is a few runs of consecutive pixels in each image row it touches (tens of
    millions of pixels at 224 px, but ~30x fewer runs). With per-row prefix sums of the masks, the concepts under
    a run are two lookups, whatever its length. When the prefix sums would be too large (many concepts, huge
    images), each region pixel's K mask values are gathered instead. Same integer counts either way.
    Build with `ConceptMasks.of(masks)`.
    """

    size: tuple[int, int]  # (H, W) of the images and masks
    area: torch.Tensor  # [K] float64: pixels of each concept over the set
    prefix: torch.Tensor | None  # [N, H, W + 1, K]: concept pixels of row y left of x (int16/int32)
    pixels: torch.Tensor | None  # [N, H * W, K] bool, when `prefix` would exceed `max_bytes`

    @classmethod
    def of(cls, masks: torch.Tensor, max_bytes: int = _PREFIX_BYTES) -> ConceptMasks:
        """From [N, K, H, W] bool masks."""
        n, k, h, w = masks.shape
        area = masks.sum(dim=(0, 2, 3), dtype=torch.float64)
        dtype = torch.int16 if w < torch.iinfo(torch.int16).max else torch.int32
        if n * h * (w + 1) * k * dtype.itemsize <= max_bytes:
            prefix = torch.zeros(n, h, w + 1, k, dtype=dtype)
            torch.cumsum(masks.permute(0, 2, 3, 1).to(dtype), dim=2, out=prefix[:, :, 1:])
            return cls((h, w), area, prefix, None)
        return cls((h, w), area, None, masks.flatten(2).transpose(1, 2).contiguous())

    @property
    def n_concepts(self) -> int:
        return len(self.area)

    def count(
        self, region: torch.Tensor, image: torch.Tensor, row: torch.Tensor, unit: torch.Tensor, n_units: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per unit, region pixels [n_units] and region pixels in each concept [n_units, K] (float64).

        region: [r, W] bool, one image row each, of `image` [r] at `row` [r], a region of `unit` [r].
        """
        inter = torch.zeros(n_units, self.n_concepts, dtype=torch.float64)
        area = torch.zeros(n_units, dtype=torch.float64)
        if self.prefix is None:
            hit, x = region.nonzero(as_tuple=True)
            pixels = self.pixels[image[hit], row[hit] * self.size[1] + x]
            area.index_add_(0, unit, region.sum(dim=1, dtype=torch.float64))
            return area, inter.index_add_(0, unit[hit], pixels.double())
        edge = F.pad(region.to(torch.int8), (1, 1)).diff(dim=1)  # +1 where a run starts, -1 one past its end
        r, x = edge.nonzero(as_tuple=True)  # row-major, so each row's starts and ends alternate
        r, start, end = r[0::2], x[0::2], x[1::2]
        img, y, u = image[r], row[r], unit[r]
        counts = self.prefix[img, y, end].int() - self.prefix[img, y, start].int()  # [runs, K]
        area.index_add_(0, u, (end - start).double())
        return area, inter.index_add_(0, u, counts.double())


def concept_iou(
    acts: torch.Tensor, masks: torch.Tensor | ConceptMasks, quantile: float = 0.995, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU [C, K] of each unit's top-quantile region with each concept, summed over the set; and thresholds [C].

    acts: [N, C, h, w] activations; masks: [N, K, H, W] bool concept masks at image resolution (or their
    `ConceptMasks`, built once for several layers).
    """
    index = masks if isinstance(masks, ConceptMasks) else ConceptMasks.of(masks)
    c, (h, w), (big_h, big_w) = acts.shape[1], acts.shape[-2:], index.size
    ry, rx = resize_matrix(h, big_h), resize_matrix(w, big_w)
    thresholds = upper_quantile(per_unit(acts), quantile)  # [C]
    inter = torch.zeros(c, index.n_concepts, dtype=torch.float64)
    area = torch.zeros(c, dtype=torch.float64)
    # (image, unit) pairs whose map can pass the threshold anywhere
    image, unit = (acts.amax(dim=(2, 3)) > thresholds).nonzero(as_tuple=True)
    for start in range(0, len(image), chunk):
        img, u = image[start : start + chunk], unit[start : start + chunk]
        rows = ry @ acts[img, u]  # [n, H, w]: upsampled along y only
        # Convexity again, per row: an image row can pass only if its y-upsampled row passes somewhere, so
        # only those rows (a few per map) are upsampled along x and compared (not n x H x W values).
        pair, y = (rows.amax(dim=2) > thresholds[u, None]).nonzero(as_tuple=True)
        region = rows[pair, y] @ rx.T > thresholds[u[pair], None]  # [r, W]: few, the regions are the top 0.5%
        part_area, part_inter = index.count(region, img[pair], y, u[pair], c)
        area += part_area
        inter += part_inter
    union = area[:, None] + index.area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))
    return iou.float(), thresholds


class Dissect(Probe):
    """Per layer: detector units, unique concepts, polysemantic units, units per best concept.

    Usage: ``Dissect(quantile=0.995, iou_threshold=0.04).run(ctx).scalars["mixed3b/detector_units"]``

    Scalars per layer: `detector_units`, `unique_concepts` (distinct best concepts of the detectors),
    `polysemantic_units` (units with >= 2 concepts at or above the threshold), `concept/<concept>`
    (detectors whose best concept it is). Table "units": layer, unit, concept (best, "" if no
    overlap at all), iou, is_detector, n_concepts. Needs concept masks in the probe set; layers
    without spatial maps (linear) are skipped and listed in `info["skipped_layers"]`.
    """

    name = "dissect"
    cheap = False

    def __init__(
        self, layers: list[str] | None = None, quantile: float = 0.995, iou_threshold: float = 0.04, chunk: int = 512
    ) -> None:
        super().__init__(layers)
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"dissect.quantile must be in (0, 1), got {quantile}")
        self.quantile = float(quantile)
        self.iou_threshold = float(iou_threshold)
        self.chunk = int(chunk)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        if ctx.probe_set.masks is None:
            return ProbeResult(info={"skipped": "no concept masks in the probe set"})
        masks = ConceptMasks.of(ctx.probe_set.masks.bool())  # once for every layer
        concepts = list(ctx.probe_set.concepts)
        result = ProbeResult()
        rows, skipped = [], []
        for layer, acts in ctx.activations(self.target_layers(ctx)).items():
            if acts.dim() != 4:
                skipped.append(layer)
                continue
            iou, _ = concept_iou(acts, masks, self.quantile, self.chunk)
            best_iou, best = iou.max(dim=1)
            n_concepts = (iou >= self.iou_threshold).sum(dim=1)
            detector = best_iou >= self.iou_threshold
            result.scalars[f"{layer}/{DETECTOR_UNITS}"] = float(detector.sum())
            result.scalars[f"{layer}/{UNIQUE_CONCEPTS}"] = float(len(set(best[detector].tolist())))
            result.scalars[f"{layer}/{POLYSEMANTIC_UNITS}"] = float((n_concepts >= 2).sum())
            for k, concept in enumerate(concepts):
                result.scalars[f"{layer}/concept/{concept}"] = float((detector & (best == k)).sum())
            rows += [
                {
                    "layer": layer,
                    "unit": u,
                    "concept": concepts[k] if v > 0 else "",
                    "iou": v,
                    "is_detector": d,
                    "n_concepts": nc,
                }
                for u, (k, v, d, nc) in enumerate(
                    zip(best.tolist(), best_iou.tolist(), detector.tolist(), n_concepts.tolist())
                )
            ]
        result.tables["units"] = rows
        if skipped:
            result.info["skipped_layers"] = skipped
        return result
