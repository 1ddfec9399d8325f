"""Training progress a researcher can read: a compact rich bar in a terminal, one line per epoch elsewhere.

Why: under nohup, SLURM or `> file` the rich bar prints nothing per epoch (it redraws a terminal line), so a
log showed no progress until the run ended; at 80 columns the bar's metrics wrapped onto ~7 lines. Here:

- stdout is a terminal: Lightning's RichProgressBar, with a one-based `Epoch 3/8` and only `loss` and
  `val/acc` next to it, so bar and metrics fit one or two lines at 80 columns;
- otherwise (pipes, files, batch jobs): no bar, and after each epoch one line
  `epoch 3/8  train/loss 0.412  val/loss 0.388  val/acc 0.912  1,430 img/s  ETA 0:01:20`, also in train.log.

Epochs are one-based wherever they are shown (bar, lines, probe log, closing summary); the record keeps
Lightning's zero-based `epoch` field.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from harness.facts import keys

log = logging.getLogger("harness.run.progress")

BAR_METRICS = {keys.TRAIN_LOSS_STEP: "loss", keys.TRAIN_LOSS: "loss", keys.VAL_ACC: keys.VAL_ACC}  # shown in the bar
LINE_METRICS = (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.VAL_ACC)


def _value(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        value = metrics.get(f"{key}_epoch")
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


class CompactRichBar(RichProgressBar):
    """RichProgressBar with a one-based epoch and two short metrics (fits 80 columns)."""

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_epochs
        text = f"Epoch {current_epoch + 1}" + (f"/{total}" if total and total > 0 else "")
        return f"{text:{len(self.validation_description)}}" if len(self.validation_description) > len(text) else text

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        short: dict[str, Any] = {}
        for key, name in BAR_METRICS.items():
            if key in metrics and name not in short:
                value = metrics[key]
                short[name] = f"{float(value):.3f}" if isinstance(value, int | float) else value
        return short


class EpochLines(pl.Callback):
    """One log line per finished epoch: losses, val/acc, training images/s and the time left."""

    def __init__(self) -> None:
        self._fit_start = self._epoch_start = self._last_batch = 0.0
        self._images = 0
        self._first_epoch: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._first_epoch = trainer.current_epoch  # a resumed run starts later: ETA from its own epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._last_batch = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[1]) if isinstance(batch, list | tuple) and len(batch) > 1 else 0
        self._last_batch = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info("%s", self.line(trainer))

    def line(self, trainer: pl.Trainer) -> str:
        """`epoch N/M  train/loss x  val/loss x  val/acc x  N img/s  ETA h:mm:ss` (absent values left out)."""
        now = time.perf_counter()
        done = trainer.current_epoch + 1
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        parts = [f"epoch {done}/{total}" if total else f"epoch {done}"]
        metrics = dict(trainer.callback_metrics)
        for key in LINE_METRICS:
            value = _value(metrics, key)
            if value is not None:
                parts.append(f"{key} {value:.4f}" if "loss" in key else f"{key} {value:.3f}")
        train_s = self._last_batch - self._epoch_start
        if self._images and train_s > 0:
            parts.append(f"{self._images / train_s:,.0f} img/s")
        epochs_here = done - (self._first_epoch or 0)
        if total and epochs_here > 0:
            per_epoch = (now - self._fit_start) / epochs_here
            parts.append(f"ETA {timedelta(seconds=round(per_epoch * max(total - done, 0)))}")
        return "  ".join(parts)


def progress_callbacks(enabled: bool, stream: Any = None) -> tuple[list[pl.Callback], bool]:
    """(callbacks, enable_progress_bar) for the Trainer: the compact bar on a terminal, epoch lines elsewhere."""
    if not enabled:
        return [], False
    stream = stream if stream is not None else sys.stdout
    if stream.isatty():
        return [CompactRichBar()], True
    return [EpochLines()], False


def testing_line(trainer: pl.Trainer) -> str:
    """Which weights `trainer.test` will use: `testing the best checkpoint, epoch 6/8, val/acc 0.996`."""
    ckpt = trainer.checkpoint_callback
    path = getattr(ckpt, "best_model_path", "") or ""
    if not path:
        return "testing the last weights (no best checkpoint)"
    import torch

    try:
        epoch = torch.load(path, map_location="cpu", weights_only=True).get("epoch")
    except Exception:  # noqa: BLE001 - a label only; Lightning reports an unreadable file itself
        epoch = None
    total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    where = "" if epoch is None else f", epoch {int(epoch) + 1}" + (f"/{total}" if total else "")
    score = getattr(ckpt, "best_model_score", None)
    monitor = getattr(ckpt, "monitor", None) or "score"
    value = "" if score is None else f", {monitor} {float(score):.3f}"
    return f"testing the best checkpoint{where}{value}"
