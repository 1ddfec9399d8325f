"""Run a set of probes on a model, isolate failures, respect a time budget, and publish the results.

Why one runner for training and for `harness-probe`: the same probes, keys and record layout
whether probes run from the Lightning callback during training or on a checkpoint afterwards, so a
comparison can mix both. A probe that raises is recorded as `<probe>/failed=1` with its message; the
other probes and the run continue.
"""

from __future__ import annotations

import csv
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.probes.base import Probe, ProbeContext, ProbeResult

log = logging.getLogger(__name__)


@dataclass
class ProbeOutcome:
    """One probe's run: its result, or why there is none."""

    name: str
    result: ProbeResult | None = None
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Scalars with the probe prefix, plus bookkeeping keys (`failed`, `skipped`, `seconds`)."""
        out = {f"{self.name}/{k}": float(v) for k, v in (self.result.scalars if self.result else {}).items()}
        out[f"{self.name}/seconds"] = round(self.seconds, 4)
        if self.error is not None:
            out[f"{self.name}/failed"] = 1.0
        if self.skipped is not None:
            out[f"{self.name}/skipped"] = 1.0
        return out


def run_probes(
    probes: Mapping[str, Probe], ctx: ProbeContext, budget_s: float | None = None, cheap_only: bool = False
) -> list[ProbeOutcome]:
    """Run each probe in order; once `budget_s` is spent the remaining probes are skipped, not run."""
    outcomes = []
    start = time.perf_counter()
    ctx.results.clear()
    for name, probe in sorted(probes.items(), key=lambda item: item[1].order):  # stable: config order within
        if cheap_only and not probe.cheap:
            continue
        outcome = ProbeOutcome(name)
        spent = time.perf_counter() - start
        if budget_s is not None and spent > budget_s:
            outcome.skipped = f"time budget of {budget_s:.0f} s spent ({spent:.0f} s)"
            log.warning("probe %s skipped: %s", name, outcome.skipped)
            outcomes.append(outcome)
            continue
        t0 = time.perf_counter()
        try:
            outcome.result = probe.run(ctx)
        except Exception as err:  # isolate: one broken probe must not cost the run or the other probes
            outcome.error = f"{type(err).__name__}: {err}"
            log.error("probe %s failed: %s\n%s", name, outcome.error, traceback.format_exc(limit=4))
        outcome.seconds = time.perf_counter() - t0
        if outcome.result is not None:
            ctx.results[name] = outcome.result
        outcomes.append(outcome)
    return outcomes


def _write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def save_outcomes(outcomes: Sequence[ProbeOutcome], run_dir: Path, suffix: str = "") -> None:
    """Tables as CSV and images as PNG under `<run_dir>/probes/`; paths kept on each outcome."""
    from PIL import Image

    folder = run_dir / "probes"
    for outcome in outcomes:
        if outcome.result is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in outcome.result.tables.items():
            if rows:
                path = folder / f"{outcome.name}_{name}{suffix}.csv"
                _write_table(path, rows)
                outcome.files[f"table/{name}"] = str(path.relative_to(run_dir))
        for name, image in outcome.result.images.items():
            path = folder / f"{outcome.name}_{name.replace('/', '_')}{suffix}.png"
            Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
            outcome.files[f"image/{name}"] = str(path.relative_to(run_dir))


def record_entry(outcome: ProbeOutcome, epoch: int | None) -> dict[str, Any]:
    """The run-record view of one outcome (JSON-safe; tables and images by file path)."""
    result = outcome.result
    return {
        "epoch": epoch,
        "seconds": round(outcome.seconds, 4),
        "scalars": dict(result.scalars) if result else {},
        "info": dict(result.info) if result else {},
        "files": dict(outcome.files),
        "error": outcome.error,
        "skipped": outcome.skipped,
    }


def publish(outcomes: Sequence[ProbeOutcome], loggers: Sequence[Any], step: int) -> None:
    """Scalars to every logger; tables and images to loggers that take them (wandb)."""
    scalars: dict[str, float] = {}
    for outcome in outcomes:
        scalars.update(outcome.scalars())
    for lg in loggers:
        lg.log_metrics(scalars, step=step)
        if not hasattr(lg, "log_table"):
            continue
        for outcome in outcomes:
            result = outcome.result
            if result is None:
                continue
            for name, rows in result.tables.items():
                if rows:
                    columns = list(dict.fromkeys(k for row in rows for k in row))
                    data = [[_cell(row.get(c)) for c in columns] for row in rows]
                    lg.log_table(key=f"{outcome.name}/{name}", columns=columns, data=data, step=step)
            for name, image in result.images.items():
                lg.log_image(key=f"{outcome.name}/{name}", images=[np.asarray(image, dtype=np.uint8)], step=step)


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
