"""Find `record.json` files below the given paths and flatten each into one comparable row.

Why read records and not wandb: the record is written by every run (also offline, failed or killed ones),
so a comparison works on a laptop without an account, and a failed run is visible with its error
instead of silently missing from a dashboard.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

# Same name as harness.records.RECORD_NAME; not imported from there because that module loads torch and
# Lightning (seconds), and comparing records needs neither.
RECORD_NAME = "record.json"

Value = float | None  # None: missing, or NaN stored as JSON null


@dataclass
class Run:
    """One run directory, flattened: identity, status and every scalar result under one metric key.

    Usage: ``run = load_run(Path("multirun/2026-11-22/22-40-44/0/record.json")); run.metrics["val/acc"]``
    """

    run_dir: Path
    status: str
    variant: str
    seed: int | None
    metrics: dict[str, Value] = field(default_factory=dict)
    error: str | None = None
    wall_seconds: float | None = None
    widen: dict[str, Any] = field(default_factory=dict)
    inserts: list[Any] = field(default_factory=list)
    probe_errors: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Only finished runs enter the statistics: failed and running ones hold partial results."""
        return self.status == "finished"

    @property
    def plain(self) -> bool:
        """No architecture edit: every widen branch adds 0 channels and nothing is inserted."""
        return not self.inserts and all(_as_number(v) in (0, None) for v in self.widen.values())


def _as_number(value: Any) -> Value:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _natural_key(path: Path) -> list[Any]:
    """Sort run 10 after run 9 (Hydra job numbers are plain integers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_records(inputs: Sequence[str | Path], skipped: list[Path] | None = None) -> list[Path]:
    """Every record.json at or below each input path, in natural order.

    A folder with none is a user error, unless `skipped` is given: then it is appended there and passed over
    (`harness-compare outputs/*/*` globs in folders that never wrote a record); no record at all stays an error.
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
        if not hits and skipped is None:
            raise ConfigError(f"no {RECORD_NAME} found at or below {path} (searched recursively)")
        if not hits:
            skipped.append(path)
        found.extend(h for h in hits if h not in found)
    if not found:
        raise ConfigError(f"no {RECORD_NAME} found at or below {', '.join(map(str, inputs))} (searched recursively)")
    return found


def flatten_metrics(record: Mapping[str, Any]) -> dict[str, Value]:
    """metrics ∪ test ∪ model/params/* ∪ `<probe>/<key>` probe scalars; the first source of a key wins."""
    out: dict[str, Value] = {}

    def add(key: str, value: Any) -> None:
        number = _as_number(value)
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


def load_run(record_path: Path) -> Run:
    """Read one record; an unreadable file becomes a run with status 'unreadable' (listed, never compared)."""
    run_dir = record_path.parent
    try:
        record = json.loads(record_path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        return Run(run_dir, status="unreadable", variant="?", seed=None, error=f"{type(err).__name__}: {err}")
    model_cfg = ((record.get("config") or {}).get("model")) or {}
    seed = record.get("seed")
    return Run(
        run_dir=run_dir,
        status=str(record.get("status") or "unknown"),
        variant=str(record.get("variant") or "(none)"),
        seed=int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) else None,
        metrics=flatten_metrics(record),
        error=record.get("error"),
        wall_seconds=_as_number(record.get("wall_seconds")),
        widen=dict(model_cfg.get("widen") or {}),
        inserts=list(model_cfg.get("insert") or []),
        probe_errors={
            name: str(entry["error"])
            for name, entry in (record.get("probes") or {}).items()
            if isinstance(entry, dict) and entry.get("error")
        },
    )


def load_runs(inputs: Sequence[str | Path], skipped: list[Path] | None = None) -> list[Run]:
    """All runs at or below the inputs (see `find_records`)."""
    return [load_run(path) for path in find_records(inputs, skipped)]


def short_dirs(runs: Sequence[Run]) -> tuple[Path | None, dict[Path, str]]:
    """(common parent, run dir -> path relative to it) for compact tables; full paths stay in the CSV."""
    dirs = [run.run_dir.resolve() for run in runs]
    if len(dirs) < 2:
        return None, {run.run_dir: str(run.run_dir) for run in runs}
    common = Path(os.path.commonpath(dirs))
    return common, {run.run_dir: (str(d.relative_to(common)) or ".") for run, d in zip(runs, dirs)}


def ordered_variants(runs: Iterable[Run]) -> list[str]:
    """Distinct variants in the order their first run appears."""
    return list(dict.fromkeys(run.variant for run in runs))
