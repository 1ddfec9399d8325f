"""The local run record: `record.json` in the run directory, the source of truth for comparison.

Why not rely on wandb: comparison and tests must work without a wandb server or account. The
record is rewritten atomically after every epoch, so a crash or Ctrl-C keeps everything logged so
far, and it is written even when wandb is off or fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from harness.facts.runs import RECORD_NAME, load_record

__all__ = ["RECORD_NAME", "RecordCallback", "RecordWriteError", "RunRecord"]
log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def _plain(value: Any) -> Any:
    """JSON-safe scalars: tensors become floats, NaN/inf become None (JSON has no NaN)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class RecordWriteError(OSError):
    """The record could not be written (disk full, unwritable folder); the previous version is untouched."""


class RunRecord:
    """Everything one run produced, kept as a JSON document in its run directory.

    Usage: ``rec = RunRecord(run_dir, config=cfg_dict, variant="base", seed=0); rec.update(model={...}); rec.save()``
    """

    def __init__(self, run_dir: str | os.PathLike, **fields: Any) -> None:
        self.path = Path(run_dir) / RECORD_NAME
        self._clock: tuple[float, float] | None = None  # (wall seconds before, perf_counter at start) in track()
        self.data: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "status": "running",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "epochs": [],
            "metrics": {},
            "test": {},
            "probes": {},
            **_plain(fields),
        }

    def update(self, **fields: Any) -> None:
        self.data.update(_plain(fields))

    def save(self) -> Path:
        """Write atomically: a full disk or a crash mid-write leaves the previous record intact.

        Only global rank 0 writes (`harness.run.distributed`): under DDP every rank holds a record, one file is
        the run's.
        Inside `track()` every save also writes the wall time so far, so a killed run keeps what it used and
        a resumed run adds to it (cumulative `wall_seconds`).
        """
        from harness.run.distributed import is_rank_zero

        if not is_rank_zero():
            return self.path
        if self._clock is not None:
            before, started = self._clock
            self.data["wall_seconds"] = round(before + time.perf_counter() - started, 2)
        tmp = self.path.with_suffix(".json.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=False))
            os.replace(tmp, self.path)  # atomic: readers never see half a file
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise RecordWriteError(f"cannot write the run record {self.path}: {err.strerror or err}") from err
        return self.path

    @classmethod
    def reopen(cls, run_dir: str | os.PathLike) -> RunRecord:
        """Continue an existing record (a resumed run): history kept, status back to running."""
        record = cls(run_dir)
        record.data = cls.load(run_dir)
        previous = record.data.get("status")
        record.data["status"] = "running"
        record.data.pop("error", None)
        done = [row["epoch"] for row in record.data.get("epochs", []) if "epoch" in row]
        record.data.setdefault("resumed", []).append(
            {
                "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "status_before": previous,
                "epochs_done": (max(done) + 1) if done else 0,
            }
        )
        return record

    @contextmanager
    def track(self) -> Iterator[RunRecord]:
        """Mark the run failed (with the error) if the block raises; always add the wall time and save.

        A record that cannot be written fails a successful run; after a failure the run's own error
        is the one raised (the write error is logged).
        """
        self._clock = (float(self.data.get("wall_seconds") or 0.0), time.perf_counter())
        failed = False
        try:
            yield self
        except BaseException as err:
            failed = True
            self.update(status="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            try:
                self.save()  # writes the wall time (see save)
            except RecordWriteError as err:
                if not failed:
                    raise
                log.error("%s", err)
            finally:
                self._clock = None  # wall_seconds as saved last

    @staticmethod
    def load(path: str | os.PathLike) -> dict[str, Any]:
        """Read a record from a run directory or a record.json path (:func:`harness.facts.runs.load_record`)."""
        return load_record(path)


class RecordCallback(pl.Callback):
    """Copies the trainer's epoch metrics and test metrics into the run record as they happen."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def _metrics(self, trainer: pl.Trainer) -> dict[str, Any]:
        return {k: _plain(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._epoch_row(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after validation in Lightning 2: merge train metrics into this epoch's row.
        self._epoch_row(trainer)

    def _epoch_row(self, trainer: pl.Trainer) -> None:
        epochs = self.record.data["epochs"]
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, **self._metrics(trainer)}
        if epochs and epochs[-1]["epoch"] == trainer.current_epoch:
            epochs[-1].update(row)
        else:
            epochs.append(row)
        self.record.data["metrics"].update({k: v for k, v in row.items() if k not in ("epoch", "step")})
        self.record.save()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        test = {k: v for k, v in self._metrics(trainer).items() if k.startswith("test/")}
        self.record.data["test"].update(test)
        self.record.data["metrics"].update(test)
        self.record.save()
