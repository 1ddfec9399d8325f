"""The probe set: a fixed, seeded set of images every probe of a run uses, so runs are comparable.

Why separate from the training data: probes need concept masks and attributes (curvature,
orientation) that training batches do not carry, and the same images for every run of a sweep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from harness.data.world import World
from harness.probes.control_cache import hash_tensor


@dataclass
class ProbeSet:
    """Images (float [0, 1], [N, 3, H, W]), labels, optional concept masks and attributes.

    Usage: ``ps = ProbeSet.from_world(World(image_size=64), n=512, seed=1234)``
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    masks: torch.Tensor | None = None  # [N, K, H, W] bool
    concepts: tuple[str, ...] = ()
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)
    _digest: str | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """SHA-256 of the images (what a cached measurement of a fixed model depends on); computed once."""
        if self._digest is None:
            h = hashlib.sha256()
            hash_tensor(h, "images", self.images)
            self._digest = h.hexdigest()
        return self._digest

    @classmethod
    def from_world(cls, world: World, n: int = 512, seed: int = 1234) -> ProbeSet:
        batch = world.generate(n, seed=seed, with_masks=True)
        return cls(
            images=batch.images.float().div_(255.0),
            labels=batch.labels,
            classes=tuple(world.classes),
            masks=batch.masks,
            concepts=tuple(world.concepts),
            attrs=dict(batch.attrs),
        )

    @classmethod
    def from_datamodule(cls, datamodule, n: int = 512, seed: int = 1234) -> ProbeSet:
        """The world's probe set when the data is the world; otherwise the first n validation images, with their
        concept masks when the datamodule has some (non-empty `concepts` and `val_masks(positions)`, as
        ImageFolder with a `masks/` folder)."""
        world = getattr(datamodule, "world", None)
        if world is not None:
            return cls.from_world(world, n=n, seed=seed)
        if callable(getattr(datamodule, "setup", None)):
            datamodule.setup("validate")  # harness-probe hands over a datamodule Lightning never set up
        xs, ys = [], []
        for x, y in datamodule.val_dataloader():
            xs.append(x if x.dtype != torch.uint8 else x.float() / 255.0)
            ys.append(y)
            if sum(len(v) for v in ys) >= n:
                break
        images, labels = torch.cat(xs)[:n].float(), torch.cat(ys)[:n]
        concepts = tuple(getattr(datamodule, "concepts", None) or ())
        masks = datamodule.val_masks(range(len(labels))) if concepts else None
        return cls(images=images, labels=labels, classes=tuple(datamodule.classes), masks=masks, concepts=concepts)

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) in order, images in the layout probe passes run fastest in (`probe_layout`)."""
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            yield probe_layout(self.images[sl].to(device)), self.labels[sl].to(device)


def probe_layout(x: torch.Tensor) -> torch.Tensor:
    """Image batches [N, C, H, W] as channels-last (NHWC) memory; other tensors unchanged.

    Why: with NHWC input, convolutions take oneDNN's channels-last path even when the model's weights are
    NCHW (the weights are reordered, which is cheap next to 224 px activations). Same values to float
    rounding; a full InceptionV1 pass at 224 px ran ~20-25% faster on the 2-core CI machine (batches of 16-64).
    """
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
