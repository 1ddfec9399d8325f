"""Real-data datamodules on tiny folders the tests create (nothing is downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import Cifar10DataModule, ImageFolderDataModule
from harness.data.folders import CIFAR10_CLASSES
from harness.facts.errors import ConfigError
from harness.train import train


def _image_folder(root: Path, classes=("cat", "dog"), per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _cifar_folder(root: Path, per_batch: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (per_batch, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": list(CIFAR10_CLASSES)}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def test_image_folder_splits_are_stratified_and_seeded(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0)
    dm.setup("fit")
    assert dm.classes == ("cat", "dog") and dm.num_classes == 2
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 16, "val": 2, "test": 2}
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (2, 3, 32, 32) and x.dtype.is_floating_point and sorted(y.tolist()) == [0, 1]
    again = ImageFolderDataModule(root=str(root), image_size=32, num_workers=0)
    again.setup("fit")
    assert again.splits["test"].indices == dm.splits["test"].indices


def test_cifar10_from_local_files(tmp_path: Path) -> None:
    root = _cifar_folder(tmp_path)
    dm = Cifar10DataModule(root=str(root), val_size=10, batch_size=8, num_workers=0)
    dm.setup("fit")
    assert dm.num_classes == 10 and "truck" in dm.classes
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == 100 and len(dm.splits["test"]) == 20
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32)


def test_cifar10_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.download=true"):
        Cifar10DataModule(root=str(tmp_path))


def test_train_on_an_image_folder(make_cfg, tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    cfg = make_cfg("debug=fdr", "data=imagefolder", f"data.root={root}", "data.image_size=32",
                   "data.num_workers=0", "data.batch_size=4", tiny=False)
    metrics, objects = train(cfg)
    assert objects["module"].class_names == ["cat", "dog"]
    assert "test/acc" in metrics
