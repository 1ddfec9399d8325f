"""Network Dissection: units wired to emit a concept's own mask are detectors of it with IoU ~1 (also after
downsampling and bilinear upsampling); a noise unit and a constant unit detect nothing (the controls).
The sparse computation equals a dense brute-force one. Model untouched, no hooks left, seeded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.data.world import CLASSES, World
from harness.probes import ProbeContext, ProbeSet
from harness.probes.dissect import ConceptMasks, Dissect, concept_iou

SIZE, N = 32, 48
CURVE, CORNER = 0, 2  # World concept indices (curve, line, corner, shape, texture)


class Planted(nn.Module):
    """Units: 0 = curve mask, 1 = corner mask, 2 = uniform noise, 3 = constant 0.5 (the images carry them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.full_like(x[:, :1], 0.5)], dim=1)


class MaskNet(nn.Module):
    """'full': the planted units at image resolution; 'half': the curve mask average-pooled to half size."""

    def __init__(self) -> None:
        super().__init__()
        self.full = Planted()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4, 2)

    def hook_points(self) -> dict[str, nn.Module]:
        return {"full": self.full, "half": self.pool}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.full(x)
        self.pool(full[:, :1])
        return self.fc(full.mean(dim=(2, 3)))


def make_ctx(with_masks: bool = True) -> ProbeContext:
    """Probe set of world masks (no texture class, so every concept is a thin stroke); the images carry the
    curve mask, the corner mask and noise as their three channels."""
    torch.manual_seed(0)
    batch = World(classes=CLASSES[:-1], image_size=SIZE).generate(N, seed=0, with_masks=True)
    masks = batch.masks
    images = torch.stack([masks[:, CURVE].float(), masks[:, CORNER].float(), torch.rand(N, SIZE, SIZE)], dim=1)
    probe_set = ProbeSet(
        images=images,
        labels=batch.labels,
        classes=CLASSES[:-1],
        masks=masks if with_masks else None,
        concepts=("curve", "line", "corner", "shape", "texture"),
    )
    return ProbeContext(MaskNet(), ["full", "half"], probe_set, batch_size=20)


def test_planted_concept_units_are_detectors() -> None:
    ctx = make_ctx()
    ctx.model.train()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    # curve pixels are ~2.6% of all, so the top 4% region of the curve unit is its whole mask (threshold 0)
    result = Dissect(quantile=0.96).run(ctx)
    rows = {(r["layer"], r["unit"]): r for r in result.tables["units"]}
    curve, corner, noise, const = (rows[("full", u)] for u in range(4))
    assert curve["concept"] == "curve" and curve["iou"] == pytest.approx(1.0) and curve["is_detector"]
    assert corner["concept"] == "corner" and corner["iou"] == pytest.approx(1.0) and corner["is_detector"]
    assert curve["n_concepts"] == 2  # curve pixels are shape pixels too: IoU(curve, shape) ~ 0.8
    assert not noise["is_detector"] and noise["iou"] < 0.03 and noise["n_concepts"] == 0  # control
    assert not const["is_detector"] and const["iou"] == 0.0 and const["concept"] == ""  # control
    half = rows[("half", 0)]  # downsampled, then upsampled bilinearly: a thicker curve, still a curve detector
    assert half["concept"] == "curve" and half["is_detector"] and 0.2 < half["iou"] < 1.0
    s = result.scalars
    assert s["full/detector_units"] == 2 and s["full/unique_concepts"] == 2
    # the curve unit, and the corner unit if its vertex discs overlap enough line strokes (IoU ~ 0.08 here)
    assert s["full/polysemantic_units"] == sum(r["n_concepts"] >= 2 for r in (curve, corner, noise, const)) >= 1
    assert s["full/concept/curve"] == 1 and s["full/concept/corner"] == 1 and s["full/concept/shape"] == 0
    assert s["half/detector_units"] == 1 and s["half/concept/curve"] == 1
    assert {type(v) for r in result.tables["units"] for v in r.values()} <= {str, int, float, bool}
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert all(m.training for m in ctx.model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in ctx.model.modules())


def test_default_quantile_keeps_only_the_top_half_percent() -> None:
    """At 0.995 the curve unit's mask (2.6% of pixels) ties at its maximum, so `> threshold` keeps nothing
    (NetDissect's rule), while the corner unit (0.2% of pixels) is still exactly its mask."""
    rows = {(r["layer"], r["unit"]): r for r in Dissect(iou_threshold=0.5).run(make_ctx()).tables["units"]}
    assert rows[("full", 1)]["iou"] == pytest.approx(1.0) and rows[("full", 1)]["n_concepts"] == 1
    assert rows[("full", 0)]["iou"] == 0.0 and not rows[("full", 2)]["is_detector"]


@pytest.mark.parametrize("max_bytes", [1 << 30, 0], ids=["row-runs", "pixel-gather"])
def test_sparse_iou_equals_dense_reference(max_bytes: int) -> None:
    """Both ways of counting concepts under a region (runs along rows with prefix sums; or per pixel, when the
    prefix sums would be too large) give the dense answer, including regions that touch the image's edges."""
    gen = torch.Generator().manual_seed(3)
    acts = torch.relu(torch.randn(12, 5, 4, 6, generator=gen))
    acts[:, :, :, 0] += 2.0  # strong left and right columns: runs that start at x = 0 or end at x = W
    acts[:, :, :, -1] += 2.0
    masks = torch.rand(12, 3, 16, 24, generator=gen) > 0.7
    index = ConceptMasks.of(masks, max_bytes=max_bytes)
    assert (index.prefix is None) == (max_bytes == 0)
    iou, thresholds = concept_iou(acts, index, quantile=0.9, chunk=7)
    up = F.interpolate(acts, size=(16, 24), mode="bilinear", align_corners=False)
    region = up > thresholds[None, :, None, None]  # [N, C, H, W]
    inter = torch.einsum("nchw,nkhw->ck", region.float(), masks.float())
    union = region.sum(dim=(0, 2, 3))[:, None] + masks.sum(dim=(0, 2, 3))[None, :] - inter
    assert torch.allclose(thresholds, torch.quantile(acts.transpose(0, 1).flatten(1), 0.9, dim=1))
    assert torch.allclose(iou, inter / union, atol=1e-6) and iou.max() > 0


def test_no_masks_is_skipped() -> None:
    result = Dissect().run(make_ctx(with_masks=False))
    assert result.info["skipped"] == "no concept masks in the probe set" and not result.scalars
