"""Concept masks that an image folder brings along, so dissect runs on user data.

Layout: ``<root>/masks/<concept>/<path of the image under root, suffix .png>``, i.e. for the image
``<root>/<class>/<stem>.jpg`` the mask of concept ``red_square`` is ``<root>/masks/red_square/<class>/<stem>.png``.
A missing mask file means the concept is absent from that image; a pixel is inside the concept when any of its
colour channels is non-zero (alpha is ignored); a mask of another size than its image is resized to it (nearest)
when it has the same aspect ratio. Concept names are the folder names, sorted.

Why this layout: a mask is found from its image's path alone (no index file to keep in sync); one folder per
concept is added or removed as a whole; sparse concepts cost nothing (no empty masks to write). PNG only: masks
are binary, and a lossy format (JPEG) would turn an edge's ringing into stray "inside" pixels. `masks/` is
reserved: the datamodule does not take it as a class.

Why checked up front and loaded lazily: every mask file's header is read when the datamodule is built (cheap),
so a layout mistake fails before training, as one line; pixels are decoded only for the probe set's images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from harness.facts.errors import ConfigError

MASKS_DIR = "masks"
MASK_SUFFIX = ".png"
LAYOUT = f"{MASKS_DIR}/<concept>/<class>/<image stem>{MASK_SUFFIX}"


def eval_geometry(size: int, nearest: bool = False) -> list:
    """Resize the short side to `size`, then centre-crop `size` x `size`: images (bilinear) and masks (nearest)."""
    mode = transforms.InterpolationMode.NEAREST if nearest else transforms.InterpolationMode.BILINEAR
    return [transforms.Resize(size, interpolation=mode, antialias=True), transforms.CenterCrop(size)]


class FolderMasks:
    """The concept masks of an image folder (see the module docstring for the layout).

    Usage: ``fm = FolderMasks.find(root, image_paths)``; ``fm.load([path, ...], size=64)`` -> [n, K, 64, 64] bool.
    ``find`` returns None when there is no `masks/` folder.
    """

    def __init__(self, folder: Path, concepts: tuple[str, ...], keys: dict[str, set[str]]) -> None:
        self.folder, self.concepts, self._keys = folder, concepts, keys

    @classmethod
    def find(cls, root: str | Path, image_paths: Sequence[str]) -> FolderMasks | None:
        root = Path(root)
        folder = root / MASKS_DIR
        if not folder.is_dir():
            return None
        where = f"data.root={root}: {MASKS_DIR}/"
        loose = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if loose:
            raise ConfigError(
                f"{where} holds images ({loose[0]}, ...): it is reserved for concept masks ({LAYOUT}); "
                "rename that class folder"
            )
        concepts = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
        if not concepts:
            raise ConfigError(f"{where} has no concept folders: expected {LAYOUT} (or remove the empty {MASKS_DIR}/)")
        images: dict[str, Path] = {}  # mask key (image path under root, suffix .png) -> image
        for path in map(Path, image_paths):
            key = path.relative_to(root).with_suffix(MASK_SUFFIX).as_posix()
            if key in images:
                raise ConfigError(
                    f"data.root={root}: images {images[key].relative_to(root)} and {path.relative_to(root)} would "
                    f"share the mask {key}: rename one"
                )
            images[key] = path
        example = f"{MASKS_DIR}/{concepts[0]}/{next(iter(images), '<class>/<image stem>.png')}"
        keys = {}
        for concept in concepts:
            keys[concept] = cls._check_concept(root, folder / concept, images, example)
        return cls(folder, concepts, keys)

    @staticmethod
    def _check_concept(root: Path, folder: Path, images: dict[str, Path], example: str) -> set[str]:
        """The mask keys of one concept; a mask that is not a .png, mirrors no image or cannot match its size fails."""
        keys = set()
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(root)
            if path.suffix.lower() != MASK_SUFFIX:
                raise ConfigError(f"data.root={root}: {rel} is not a .png: masks are lossless .png files ({LAYOUT})")
            key = path.relative_to(folder).as_posix()
            if key not in images:
                raise ConfigError(
                    f"data.root={root}: {rel} mirrors no image: a mask mirrors its image's path, {LAYOUT} "
                    f"(e.g. {example})"
                )
            _check_size(root, path, images[key])
            keys.add(key)
        if not keys:
            raise ConfigError(
                f"data.root={root}: concept folder {folder.relative_to(root)}/ holds no masks: add {LAYOUT} files "
                "or remove the folder"
            )
        return keys

    def load(self, image_paths: Sequence[str], size: int) -> torch.Tensor:
        """Masks [n, K, size, size] bool of these images, with the geometry of the images' eval transform."""
        geometry = transforms.Compose(eval_geometry(size, nearest=True))
        out = torch.zeros(len(image_paths), len(self.concepts), size, size, dtype=torch.bool)
        root = self.folder.parent
        for i, image in enumerate(map(Path, image_paths)):
            key = image.relative_to(root).with_suffix(MASK_SUFFIX).as_posix()
            with Image.open(image) as im:
                image_size = im.size
            for k, concept in enumerate(self.concepts):
                if key in self._keys[concept]:  # else: absent from this image
                    mask = _read_mask(self.folder / concept / key).resize(image_size, Image.Resampling.NEAREST)
                    out[i, k] = torch.from_numpy(np.asarray(geometry(mask)) > 0)
        return out


def _check_size(root: Path, mask: Path, image: Path) -> None:
    """A mask must have its image's size, or a scaled copy's (same aspect ratio, to one mask pixel)."""
    try:
        with Image.open(mask) as m:
            mw, mh = m.size
            m.verify()
    except Exception as err:  # PIL raises several types for a damaged file
        raise ConfigError(
            f"data.root={root}: {mask.relative_to(root)} is not a readable image ({type(err).__name__}); "
            "remove or replace it"
        ) from None
    with Image.open(image) as im:
        iw, ih = im.size
    scale = iw / mw
    if abs(mh * scale - ih) > max(scale, 1.0):
        raise ConfigError(
            f"data.root={root}: mask {mask.relative_to(root)} is {mw}x{mh} px but its image "
            f"{image.relative_to(root)} is {iw}x{ih}: give the mask its image's size (or the same aspect ratio)"
        )


def _read_mask(path: Path) -> Image.Image:
    """The mask as a mode-L image: 255 where any colour channel is non-zero, else 0."""
    with Image.open(path) as im:
        if im.mode in ("1", "L", "I", "I;16", "F"):
            inside = np.asarray(im) != 0
        else:  # RGB, RGBA, LA, P (palette): colour channels only
            inside = (np.asarray(im.convert("RGB")) != 0).any(axis=-1)
    return Image.fromarray(inside.astype(np.uint8) * 255)  # uint8 [H, W]: mode L
