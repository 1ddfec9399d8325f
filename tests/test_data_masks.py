"""Concept masks that a user's image folder brings (`<root>/masks/<concept>/<class>/<stem>.png`): dissect finds a
planted red-square unit through ProbeSet.from_datamodule, not on a noise concept (negative control) nor with the
masks shuffled across images (control); bad layouts fail with one line; no masks/: dissect skips with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import ImageFolderDataModule
from harness.facts.errors import ConfigError
from harness.probes import ProbeContext, ProbeSet
from harness.probes.dissect import Dissect
from harness.probes.runner import run_probes
from harness.run.records import RunRecord
from harness.train import train
from tests.helpers import OneLayerNet

SIZE, SQUARE, PER_CLASS = 32, 6, 8
RED_UNIT = [[1.0, -0.5, -0.5], [0.0, 0.0, 0.0]]  # unit 0: red minus the others; unit 1: the constant bias (control)


def _masked_folder(root: Path, with_masks: bool = True) -> Path:
    """2 classes x 8 images: bluish-grey noise, a red square at a random place in 3 of 4 images (its mask under
    masks/red_square/; none written where there is no square), and random pixels as the concept `noise`."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(PER_CLASS):
            grey = rng.integers(0, 200, (SIZE, SIZE), dtype=np.uint8)
            image = np.stack([grey, grey + 20, grey + 20], axis=-1)  # red < green, blue: unit 0 is 0 here
            square = np.zeros((SIZE, SIZE), dtype=bool)
            if i % 4:
                y, x = rng.integers(0, SIZE - SQUARE, 2)
                square[y : y + SQUARE, x : x + SQUARE] = True
                image[square] = (230, 10, 10)
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / c / f"{i}.png")
            if not with_masks:
                continue
            masks = {"noise": rng.random((SIZE, SIZE)) < 0.03}
            if square.any():
                masks["red_square"] = square
            for concept, mask in masks.items():
                (root / "masks" / concept / c).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / concept / c / f"{i}.png")
    return root


def _datamodule(root: Path) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(root), image_size=SIZE, val_fraction=0.5, test_fraction=0.0, num_workers=0)


def _dissect(probe_set: ProbeSet) -> dict[int, dict]:
    ctx = ProbeContext(OneLayerNet(RED_UNIT, bias=[0.0, 0.5]), ["layer"], probe_set, batch_size=8)
    # quantile 0.9: squares cover ~2.6% of the pixels, so the threshold is 0 and unit 0's region is the squares
    result = Dissect(quantile=0.9).run(ctx)
    return {r["unit"]: r for r in result.tables["units"]} | {"scalars": result.scalars}


def test_dissect_finds_the_red_square_unit_in_a_folders_masks(tmp_path: Path, one_thread) -> None:
    dm = _datamodule(_masked_folder(tmp_path / "data"))
    assert dm.classes == ("a", "b") and dm.concepts == ("noise", "red_square")  # masks/ is not a class
    ps = ProbeSet.from_datamodule(dm, n=8)
    assert ps.concepts == dm.concepts and ps.masks.shape == (8, 2, SIZE, SIZE) and ps.masks.dtype == torch.bool
    red = (ps.images[:, 0] > 0.8) & (ps.images[:, 1] < 0.1)  # the red pixels of each probe image
    assert torch.equal(ps.masks[:, 1], red) and red.any()  # each mask is its own image's, pixel for pixel
    rows = _dissect(ps)
    assert rows[0]["concept"] == "red_square" and rows[0]["iou"] > 0.95 and rows[0]["is_detector"]
    assert rows[0]["n_concepts"] == 1  # not a detector of the noise concept (negative control)
    assert not rows[1]["is_detector"] and rows[1]["concept"] == ""  # the constant unit (control)
    assert rows["scalars"]["layer/concept/red_square"] == 1 and rows["scalars"]["layer/concept/noise"] == 0

    shuffled = ProbeSet(ps.images, ps.labels, ps.classes, ps.masks.roll(1, dims=0), ps.concepts)  # control
    rows = _dissect(shuffled)
    assert not rows[0]["is_detector"] and rows[0]["iou"] < 0.04 and rows["scalars"]["layer/detector_units"] == 0


def test_a_scaled_mask_is_resized_to_its_image(tmp_path: Path) -> None:
    root = _masked_folder(tmp_path / "data")
    dm = _datamodule(root)
    expected = dm.val_masks([0, 1, 2, 3])
    path = Path(dm.splits["val"].dataset.samples[dm.splits["val"].indices[1]][0])
    mask = root / "masks" / "red_square" / path.parent.name / path.name
    Image.open(mask).resize((2 * SIZE, 2 * SIZE), Image.Resampling.NEAREST).save(mask)  # a 64 px mask, 32 px image
    assert torch.equal(_datamodule(root).val_masks([0, 1, 2, 3]), expected)


def _no_concepts(root: Path) -> tuple[str, str]:
    for p in sorted((root / "masks").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    return "no concept folders", "expected masks/<concept>/<class>/<image stem>.png"


def _empty_concept(root: Path) -> tuple[str, str]:
    (root / "masks" / "stripes").mkdir()
    return "masks/stripes/ holds no masks", "or remove the folder"


def _flat_mask(root: Path) -> tuple[str, str]:  # forgot the class level
    Image.new("L", (SIZE, SIZE)).save(root / "masks" / "noise" / "3.png")
    return "masks/noise/3.png mirrors no image", "(e.g. masks/noise/a/0.png)"


def _wrong_shape(root: Path) -> tuple[str, str]:
    Image.new("L", (SIZE, SIZE // 2)).save(root / "masks" / "noise" / "a" / "3.png")
    return "is 32x16 px but its image a/3.png is 32x32", "give the mask its image's size"


def _jpeg_mask(root: Path) -> tuple[str, str]:
    Image.new("RGB", (SIZE, SIZE)).save(root / "masks" / "noise" / "a" / "9.jpg")
    return "masks/noise/a/9.jpg is not a .png", "masks are lossless .png files"


def _class_named_masks(root: Path) -> tuple[str, str]:
    Image.new("RGB", (SIZE, SIZE)).save(root / "masks" / "0.png")
    return "holds images (0.png, ...)", "rename that class folder"


@pytest.mark.parametrize("spoil", [_no_concepts, _empty_concept, _flat_mask, _wrong_shape, _jpeg_mask,
                                   _class_named_masks])  # fmt: skip
def test_a_bad_mask_layout_is_one_clear_line(tmp_path: Path, spoil) -> None:
    root = _masked_folder(tmp_path / "data")
    cause, remedy = spoil(root)
    with pytest.raises(ConfigError) as info:
        _datamodule(root)
    message = str(info.value)
    assert cause in message and remedy in message and "\n" not in message


def test_no_masks_folder_dissect_skips_with_one_line(tmp_path: Path, caplog) -> None:
    dm = _datamodule(_masked_folder(tmp_path / "data", with_masks=False))
    assert dm.concepts == ()
    ps = ProbeSet.from_datamodule(dm, n=8)
    assert ps.masks is None and ps.concepts == ()
    ctx = ProbeContext(OneLayerNet(RED_UNIT, bias=[0.0, 0.5]), ["layer"], ps, batch_size=8)
    with caplog.at_level(logging.WARNING):
        (outcome,) = run_probes({"dissect": Dissect()}, ctx)
    assert outcome.skipped == "no concept masks in the probe set" and outcome.error is None
    assert [r.getMessage() for r in caplog.records] == ["probe dissect skipped: no concept masks in the probe set"]


def test_training_on_a_masked_folder_records_dissect(make_cfg, tmp_path: Path, one_thread) -> None:
    root = _masked_folder(tmp_path / "data")
    cfg = make_cfg("data=imagefolder", f"data.root={root}", "data.image_size=32", "data.num_workers=0",
                   "data.batch_size=8", "data.val_fraction=0.5", "data.test_fraction=0.25", "model=inception_v1_tiny",
                   "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                   "logger=none", "probes=[dissect]", "probing.probe_set_size=8", "probing.budget_s=null",
                   tiny=False)  # fmt: skip
    train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    entry = record["probes"]["dissect"]
    assert entry["error"] is None and entry["skipped"] is None
    assert any(k.startswith("dissect/") and k.endswith("/concept/red_square") for k in record["metrics"])
    assert any(k.endswith("/detector_units") for k in record["metrics"])
