"""Find, load and flatten run records (`record.json`) without importing torch or Lightning.

Why a module of its own: every reader of runs (harness-compare, harness-suggest, `resume=`, the growth
workflow, checkpoints copied without their run) needs the same three facts: what the record file is
called, where the records below a path are, and how a record becomes one flat row of scalars.
Written once here, torch-free, so comparing a hundred runs starts in milliseconds; the writer
(:mod:`harness.run.records`) imports the file name from here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.facts.errors import ConfigError

RECORD_NAME = "record.json"

Value = float | None  # None: missing, or NaN stored as JSON null


def _natural_key(path: Path) -> list[Any]:
    """Sort run 10 after run 9 (Hydra job numbers are plain integers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _nested(hit: Path, root: Path) -> bool:
    """A record inside another run's folder below ``root`` is part of that run (a grow loop's rounds), not a run."""
    folder = hit.parent.parent
    while folder != root and root in folder.parents:
        if (folder / RECORD_NAME).is_file():
            return True
        folder = folder.parent
    return False


def find_records(inputs: Sequence[str | os.PathLike], skipped: list[Path] | None = None) -> list[Path]:
    """Every record.json at or below each input path, in natural order; a path with none is a user error.

    Unless `skipped` is given: then such a path is appended there and passed over (`harness-compare outputs/*/*`
    globs in folders that never wrote a record); no record at all stays an error.

    Usage: ``find_records(["multirun/2026-11-22/22-40-44"])``
    """
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"no such file or directory: {path}")
        if path.is_file():
            hits = [path] if path.name == RECORD_NAME else []
        elif (path / RECORD_NAME).is_file():
            hits = [path / RECORD_NAME]
        else:
            hits = sorted(path.rglob(RECORD_NAME), key=_natural_key)
        hits = [h for h in hits if not _nested(h, path)]
        if not hits and skipped is None:
            raise ConfigError(f"no {RECORD_NAME} found at or below {path} (searched recursively)")
        if not hits:
            skipped.append(path)
        found.extend(h for h in hits if h not in found)
    if not found:
        raise ConfigError(f"no {RECORD_NAME} found at or below {', '.join(map(str, inputs))} (searched recursively)")
    return found


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    """One record as a dict, from a run directory or a record.json path.

    Raises OSError (missing file) or ValueError (not JSON, or not a JSON object); callers decide whether
    that is a listed-but-unreadable run (compare, suggest) or a one-line error (resume).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    record = json.loads(path.read_text())
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a JSON object")
    return record


def record_of_checkpoint(ckpt: str | os.PathLike) -> Path | None:
    """The record.json of the run that wrote a checkpoint (the checkpoint's folder or its parent), if present."""
    ckpt = Path(ckpt)
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / RECORD_NAME).is_file():
            return folder / RECORD_NAME
    return None


def as_number(value: Any) -> Value:
    """A JSON scalar as float (bools count as 0/1); None for anything else."""
    if isinstance(value, bool | int | float):
        return float(value)
    return None


def flatten(record: Mapping[str, Any]) -> dict[str, Value]:
    """metrics ∪ test ∪ model/params/* ∪ `<probe>/<key>` probe scalars; the first source of a key wins.

    Usage: ``flatten(load_record(run_dir))["val/acc"]``
    """
    out: dict[str, Value] = {}

    def add(key: str, value: Any) -> None:
        number = as_number(value)
        if value is not None and number is None:
            return  # strings, lists: not a scalar result
        if out.get(key) is None:
            out[key] = number

    for source in (record.get("metrics") or {}, record.get("test") or {}):
        for key, value in source.items():
            add(str(key), value)
    for key, value in (record.get("model") or {}).items():
        if str(key).startswith("params/"):
            add(f"model/{key}", value)
    for probe, entry in (record.get("probes") or {}).items():
        for key, value in ((entry or {}).get("scalars") or {}).items():
            add(f"{probe}/{key}", value)
    return out


def model_config(record: Mapping[str, Any]) -> dict[str, Any]:
    """The run's model config as recorded (empty when the record has none)."""
    return dict(((record.get("config") or {}).get("model")) or {})
