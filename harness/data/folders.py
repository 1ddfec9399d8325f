"""Real-data datamodules: torchvision CIFAR-10 and a generic ImageFolder, from folders the user gives.

Why thin wrappers: torchvision already reads these formats; we add what the harness needs — clear
errors that say how to fix a missing or empty folder, no download unless asked for (`download=true`),
seeded held-out splits, and the `classes` / `num_classes` / `image_size` the trainer reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from harness.data.folder_masks import LAYOUT, MASKS_DIR, FolderMasks, eval_geometry
from harness.facts.errors import ConfigError


def _stratified_split(targets: list[int], fractions: tuple[float, ...], seed: int) -> list[list[int]]:
    """Split indices into len(fractions)+1 parts, per class, with a seeded shuffle (last part = rest)."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    for idx in by_class.values():
        perm = [idx[i] for i in torch.randperm(len(idx), generator=g).tolist()]
        start = 0
        for p, frac in enumerate(fractions):
            n = int(round(len(perm) * frac))
            parts[p].extend(perm[start : start + n])
            start += n
        parts[-1].extend(perm[start:])
    return [sorted(p) for p in parts]


class _FolderDataModule(pl.LightningDataModule):
    """Shared loaders for map-style torchvision datasets (subclasses fill `self.splits`)."""

    def __init__(self, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.splits: dict[str, Dataset] = {}
        self.classes: tuple[str, ...] = ()
        self.concepts: tuple[str, ...] = ()  # concept masks for dissect (ImageFolder's masks/), none by default

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _cifar_files_present(root: str) -> bool:
    cls = datasets.CIFAR10
    folder = Path(root) / cls.base_folder
    return all((folder / name).is_file() for name, _ in cls.train_list + cls.test_list)


class _LocalCIFAR10(datasets.CIFAR10):
    # torchvision checks md5 sums of the official archive; we accept any CIFAR-format batch files the
    # user placed (e.g. a subset), and only insist that they exist. Like torchvision, this unpickles
    # the batch files: CIFAR's python format is pickle, so only point data.root at files you trust.
    def _check_integrity(self) -> bool:
        return _cifar_files_present(self.root)

    def _load_meta(self) -> None:
        # The class names are fixed; skip torchvision's md5-checked read of batches.meta.
        self.classes = list(CIFAR10_CLASSES)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class Cifar10DataModule(_FolderDataModule):
    """CIFAR-10 from `root` (holding `cifar-10-batches-py/`); the official test batch is the test split.

    Usage: ``Cifar10DataModule(root="~/data/cifar10")`` (set ``download`` to true to fetch it once).
    """

    def __init__(
        self,
        root: str,
        download: bool = False,
        image_size: int = 32,
        val_size: int = 5000,
        batch_size: int = 128,
        num_workers: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.root = os.path.expanduser(str(root))
        self.download, self.image_size, self.val_size, self.seed = download, image_size, val_size, seed
        if not download and not _cifar_files_present(self.root):
            folder = Path(self.root) / datasets.CIFAR10.base_folder
            raise ConfigError(
                f"CIFAR-10 not found in {folder} (needs data_batch_1..5 and test_batch): extract the "
                f"cifar-10-python archive under data.root={self.root}, or set data.download=true to fetch it"
            )
        self.classes = CIFAR10_CLASSES

    def prepare_data(self) -> None:
        """Download once, in one process: Lightning calls this on (local) rank 0 only, before `setup` on all ranks."""
        if self.download:
            for train in (True, False):
                _LocalCIFAR10(self.root, train=train, download=True)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        tf = [transforms.ToTensor()]
        if self.image_size != 32:
            tf.insert(0, transforms.Resize(self.image_size, antialias=True))
        aug = transforms.Compose([transforms.RandomHorizontalFlip(), *tf])
        plain = transforms.Compose(tf)
        train_full = _LocalCIFAR10(self.root, train=True, download=False, transform=aug)
        val_full = _LocalCIFAR10(self.root, train=True, download=False, transform=plain)
        n_val = min(self.val_size, len(train_full) // 2)
        val_idx, train_idx = _stratified_split(train_full.targets, (n_val / len(train_full),), self.seed)
        self.splits = {
            "train": Subset(train_full, train_idx),
            "val": Subset(val_full, val_idx),
            "test": _LocalCIFAR10(self.root, train=False, download=False, transform=plain),
        }


IMAGE_EXTENSIONS = datasets.folder.IMG_EXTENSIONS


def _check_images(ds: datasets.ImageFolder) -> None:
    """Open every image's header (cheap: no decoding) so a corrupt file is named before training starts."""
    from PIL import Image, UnidentifiedImageError

    for path, _ in ds.samples:
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ConfigError(
                f"data.root: {path} is not a readable image ({type(err).__name__}); remove or "
                f"replace it (images: {', '.join(IMAGE_EXTENSIONS)})"
            ) from None


class _ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder without the reserved `masks/` folder: it holds concept masks, not a class."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return _find_classes(directory)


def _find_classes(root: str) -> tuple[list[str], dict[str, int]]:
    """As torchvision's `find_classes` (sub-folders, sorted), minus `masks/`; FileNotFoundError when none."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name != MASKS_DIR)
    if not classes:
        raise FileNotFoundError(f"no class folders in {root}")
    return classes, {c: i for i, c in enumerate(classes)}


class ImageFolderDataModule(_FolderDataModule):
    """Images in `root/<class>/*.png|jpg|...`; val/test held out per class with a seeded split.

    Optional concept masks for dissect in `root/masks/<concept>/<class>/<image stem>.png`
    (`harness/data/folder_masks.py`): `masks/` is then not a class; `concepts` names them (sorted folder names)
    and `val_masks(positions)` loads the masks of those validation images only.

    Usage: ``ImageFolderDataModule(root="~/data/shapes", image_size=64)``
    """

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int = 64,
        num_workers: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.root = os.path.expanduser(str(root))
        self.image_size, self.seed = image_size, seed
        self.fractions = (val_fraction, test_fraction)
        if not Path(self.root).is_dir():
            raise ConfigError(f"data.root={self.root} is not a folder: give a folder with one sub-folder per class")
        try:
            self.classes = tuple(_find_classes(self.root)[0])
        except FileNotFoundError:
            self.classes = ()
        if not self.classes:
            raise ConfigError(
                f"data.root={self.root} has no class sub-folders: expected <root>/<class>/<image> "
                f"(and optionally concept masks in <root>/{LAYOUT})"
            )
        dataset = self._dataset(None)
        _check_images(dataset)  # fails now, not mid-run, on a missing or unreadable image
        self.masks = FolderMasks.find(self.root, [path for path, _ in dataset.samples])  # checks every mask's header
        self.concepts = self.masks.concepts if self.masks else ()

    def _dataset(self, transform) -> datasets.ImageFolder:
        try:
            return _ImageFolder(self.root, transform=transform)
        except FileNotFoundError as err:
            raise ConfigError(
                f"data.root={self.root} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders"
            ) from err

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        size = self.image_size
        plain = transforms.Compose([*eval_geometry(size), transforms.ToTensor()])  # masks: the same geometry
        aug = transforms.Compose(
            [
                transforms.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
            ]
        )
        train_ds, eval_ds = self._dataset(aug), self._dataset(plain)
        val_idx, test_idx, train_idx = _stratified_split(train_ds.targets, self.fractions, self.seed)
        self.splits = {
            "train": Subset(train_ds, train_idx),
            "val": Subset(eval_ds, val_idx),
            "test": Subset(eval_ds, test_idx),
        }

    def val_masks(self, positions: Sequence[int]) -> torch.Tensor:
        """Concept masks [n, K, image_size, image_size] bool of these validation samples (positions in the split)."""
        if self.masks is None:
            raise ConfigError(f"data.root={self.root} has no concept masks: expected <root>/{LAYOUT}")
        self.setup("validate")
        val = self.splits["val"]
        paths = [val.dataset.samples[val.indices[p]][0] for p in positions]
        return self.masks.load(paths, self.image_size)
