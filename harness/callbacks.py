"""Small Lightning callbacks the harness adds to every run.

Why our own throughput meter: Lightning's ThroughputMonitor needs per-model FLOP and batch-size
functions; we only want images/s of the training loop (data loading included, validation excluded),
which is the number users compare across variants and precisions.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl


class ThroughputLogger(pl.Callback):
    """Logs `perf/train_images_per_s` once per epoch.

    Usage: ``Trainer(callbacks=[ThroughputLogger()])``
    """

    def __init__(self) -> None:
        self._start = self._last = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[1])
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        elapsed = self._last - self._start
        if self._images and elapsed > 0:
            pl_module.log("perf/train_images_per_s", self._images / elapsed)
