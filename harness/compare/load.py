"""Runs as comparable rows: each `record.json` (found and flattened by :mod:`harness.facts.runs`) becomes a `Run`.

Why read records and not wandb: the record is written by every run (also offline, failed or killed ones),
so a comparison works on a laptop without an account, and a failed run is visible with its error
instead of silently missing from a dashboard.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.facts.keys import TABLE_FILE
from harness.facts.runs import Value, as_number, find_records, flatten, load_record, model_config


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
    channels: dict[str, int] = field(default_factory=dict)  # layer -> units, in model order (record's model section)
    tables: dict[str, Path] = field(default_factory=dict)  # probe -> its per-unit table (CSV) in the run dir

    @property
    def finished(self) -> bool:
        """Only finished runs enter the statistics: failed and running ones hold partial results."""
        return self.status == "finished"

    @property
    def plain(self) -> bool:
        """No architecture edit: every widen branch adds 0 channels and nothing is inserted."""
        return not self.inserts and all(as_number(v) in (0, None) for v in self.widen.values())


def load_run(record_path: Path) -> Run:
    """Read one record; an unreadable file becomes a run with status 'unreadable' (listed, never compared)."""
    run_dir = record_path.parent
    try:
        record = load_record(record_path)
    except (OSError, ValueError) as err:
        return Run(run_dir, status="unreadable", variant="?", seed=None, error=f"{type(err).__name__}: {err}")
    model_cfg = model_config(record)
    seed = record.get("seed")
    return Run(
        run_dir=run_dir,
        status=str(record.get("status") or "unknown"),
        variant=str(record.get("variant") or "(none)"),
        seed=int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) else None,
        metrics=flatten(record),
        error=record.get("error"),
        wall_seconds=as_number(record.get("wall_seconds")),
        widen=dict(model_cfg.get("widen") or {}),
        inserts=list(model_cfg.get("insert") or []),
        probe_errors={
            name: str(entry["error"])
            for name, entry in (record.get("probes") or {}).items()
            if isinstance(entry, dict) and entry.get("error")
        },
        channels={str(k): int(v) for k, v in ((record.get("model") or {}).get("channels") or {}).items()
                  if isinstance(v, int | float) and not isinstance(v, bool)},  # fmt: skip
        tables={
            name: run_dir / entry["files"][TABLE_FILE]
            for name, entry in (record.get("probes") or {}).items()
            if isinstance(entry, dict) and isinstance(entry.get("files"), dict) and entry["files"].get(TABLE_FILE)
        },
    )


def load_runs(inputs: Sequence[str | Path], skipped: list[Path] | None = None) -> list[Run]:
    """All runs at or below the inputs (see `find_records`; folders without a record go to `skipped` if given)."""
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
