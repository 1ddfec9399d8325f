"""LightningDataModule over the procedural stimulus world, pre-generated once per run.

Why pre-generate: drawing images on the fly on a 2-core machine steals ~a quarter of the training
time (docs/DESIGN.md); a 20k-image split at 64 px is 250 MB as uint8 and takes seconds to draw. Batches
are taken by index from in-memory tensors (no per-image collation), which keeps the step fed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from harness.data.world import CLASSES, World
from harness.facts.errors import ConfigError

# Each split draws from its own seed stream so that growing one split never changes another.
_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


class TensorBatches(Dataset):
    """A dataset indexed by a *list* of indices, returning a whole batch at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index)
        return self.images[idx], self.labels[idx]


class EpochShuffle(Sampler[int]):
    """A random order that depends only on (seed, epoch).

    Why not RandomSampler: it draws from the global RNG, so a run resumed from a checkpoint would see
    different batches than the uninterrupted run; here epoch 5 has the same order however it is reached.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        yield from torch.randperm(self.n, generator=gen).tolist()


class EpochBatches(BatchSampler):
    """BatchSampler that passes Lightning's per-epoch `set_epoch` on to its sampler."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def batch_loader(ds: TensorBatches, batch_size: int, shuffle: bool, seed: int | None = None) -> DataLoader:
    """Whole batches by index; `shuffle` orders each epoch by (seed, epoch), seed defaulting to torch's."""
    seed = torch.initial_seed() if seed is None else seed  # = the run's seed after pl.seed_everything
    sampler = EpochShuffle(len(ds), seed) if shuffle else SequentialSampler(ds)
    # Dropping the ragged last training batch keeps batch-norm statistics sane, unless it is the only one.
    drop_last = shuffle and len(ds) > batch_size
    return DataLoader(ds, sampler=EpochBatches(sampler, batch_size, drop_last=drop_last), batch_size=None)


NUISANCE_KEYS: tuple[str, ...] = ("noise", "min_contrast", "thickness", "clutter", "occlusion")


def _knobs(nuisance: Mapping[str, Any] | None) -> dict[str, Any]:
    """data.nuisance as World keyword arguments; an unknown key fails naming the valid ones."""
    knobs = dict(nuisance or {})
    unknown = sorted(set(knobs) - set(NUISANCE_KEYS))
    if unknown:
        raise ConfigError(f"unknown data.nuisance key {unknown[0]!r}; valid: {', '.join(NUISANCE_KEYS)}")
    if "thickness" in knobs:
        knobs["thickness"] = tuple(knobs["thickness"])
    return knobs


class WorldDataModule(pl.LightningDataModule):
    """Train/val/test splits of the stimulus world; images are uint8 [N, 3, H, W].

    Usage: ``dm = WorldDataModule(classes=["line", "corner"], train_size=1000); dm.setup("fit")``
    """

    def __init__(
        self,
        classes: Sequence[str] = CLASSES,
        image_size: int = 64,
        train_size: int = 20000,
        val_size: int = 2000,
        test_size: int = 2000,
        seed: int = 0,
        batch_size: int = 128,
        nuisance: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # `nuisance`: World's knobs (noise, min_contrast, thickness, clutter, occlusion); data=world_hard sets them.
        self.world = World(classes=list(classes), image_size=image_size, **_knobs(nuisance))  # validates eagerly
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed
        self.batch_size = batch_size
        self.splits: dict[str, TensorBatches] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.world.classes)

    @property
    def num_classes(self) -> int:
        return len(self.world.classes)

    @property
    def image_size(self) -> int:
        return self.world.image_size

    def split_seed(self, split: str) -> int:
        return self.seed * 10 + _SPLIT_OFFSET[split]

    def _split(self, split: str) -> TensorBatches:
        if split not in self.splits:
            batch = self.world.generate(self.sizes[split], seed=self.split_seed(split), with_masks=False)
            self.splits[split] = TensorBatches(batch.images, batch.labels)
        return self.splits[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", tuple(self.sizes))
        for split in wanted:
            self._split(split)

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self._split("train"), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return batch_loader(self._split("val"), self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self._split("test"), self.batch_size, shuffle=False)
