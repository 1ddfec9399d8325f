"""An on-disk cache for what a probe measures on a random-init control (the curve census of a fresh init, the
Gram matrices of CKA's reference).

Why: a random-init control is the same network every time for one architecture and seed (`ctx.make_model`
is seeded), so its census is too; on the full InceptionV1 at 224 px it is half of the curves probe. Every
run of a sweep with the same architecture and seed, and every probe round, can reuse it. Likewise CKA's
reference (a run's initial weights, or harness-probe's fresh init): its Gram matrices cost one pass over the
probe set (resnet18 at 224 px: ~15 s on 2 cores) and are the same in every run that starts from it.

The key is the control itself, not its config: a digest of the module tree (`repr`, which names every
layer and its shape) and of every parameter and buffer, plus whatever else the caller says the result
depends on (image size, stimulus and criterion settings, layers, torch version). So a different
architecture, width, edit, seed or torch RNG misses, and a hit is exactly the census the control would give.

Where: `$HARNESS_CACHE_DIR`, else `$XDG_CACHE_HOME/harness`, else `~/.cache/harness`; one small JSON file
per entry under `<probe>/` (tensors: one `.pt` file, `save_tensors`). A cache that cannot be read or written
costs a log line, never the probe. Any file or folder there may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

log = logging.getLogger(__name__)

VERSION = 1  # bump when what a cached result means changes


def cache_dir() -> Path:
    """The user's harness cache folder (not created here)."""
    if env := os.environ.get("HARNESS_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "harness"


def model_digest(model: nn.Module) -> str:
    """SHA-256 of the module tree and every parameter and buffer (names, dtypes, shapes, values)."""
    h = hashlib.sha256(repr(model).encode())
    for name, value in model.state_dict().items():
        hash_tensor(h, name, value)
    return h.hexdigest()


def hash_tensor(h: Any, label: str, value: torch.Tensor) -> None:
    """Feed a tensor's label, dtype, shape and bytes into the hash `h` (hashlib object)."""
    value = value.detach().cpu().contiguous()
    h.update(f"{label}|{value.dtype}|{tuple(value.shape)}|".encode())
    if value.numel():
        h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())


def cache_key(model: nn.Module, **depends_on: Any) -> str:
    """A file-name-safe key for `model`'s result under the given settings (JSON-serialisable values)."""
    spec = {"version": VERSION, "torch": torch.__version__, "model": model_digest(model), **depends_on}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load(probe: str, key: str, folder: Path | None = None) -> Any | None:
    """The cached value, or None (missing, unreadable)."""
    path = (folder or cache_dir()) / probe / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("%s: ignoring unreadable cache file %s: %s", probe, path, err)
        return None


def save(probe: str, key: str, value: Any, folder: Path | None = None) -> Path | None:
    """Write `value` (JSON) atomically; returns the path, or None when it could not be written."""
    return _write(probe, f"{key}.json", "w", lambda f: json.dump(value, f), folder)


def _write(probe: str, name: str, mode: str, dump: Callable[[IO], None], folder: Path | None) -> Path | None:
    """Write `<cache>/<probe>/<name>` through `dump(file)` atomically; the path, or None (one log line)."""
    folder = (folder or cache_dir()) / probe
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(mode, dir=folder, suffix=".tmp", delete=False) as f:
            dump(f)
        path = folder / name
        os.replace(f.name, path)  # atomic: a concurrent run reads the old file or the new one, never half
        return path
    except OSError as err:
        log.warning("%s: could not write the cache in %s: %s", probe, folder, err)
        return None


def load_tensors(probe: str, key: str, folder: Path | None = None) -> dict[str, torch.Tensor] | None:
    """A cached dict of tensors (`save_tensors`), or None (missing, unreadable)."""
    path = (folder or cache_dir()) / probe / f"{key}.pt"
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as err:  # a truncated or foreign file: recompute, never fail the probe
        log.warning("%s: ignoring unreadable cache file %s: %s", probe, path, err)
        return None
    if not isinstance(value, dict) or not all(isinstance(v, torch.Tensor) for v in value.values()):
        log.warning("%s: ignoring cache file %s: not a dict of tensors", probe, path)
        return None
    return value


def save_tensors(probe: str, key: str, value: dict[str, torch.Tensor], folder: Path | None = None) -> Path | None:
    """Write a dict of tensors atomically (`torch.save`); returns the path, or None when it could not be written."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in value.items()}
    return _write(probe, f"{key}.pt", "wb", lambda f: torch.save(tensors, f), folder)
