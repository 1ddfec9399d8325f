"""Small Lightning callbacks the harness adds to every run.

Why our own throughput meter: Lightning's ThroughputMonitor needs per-model FLOP and batch-size
functions; we only want images/s of the training loop (data loading included, validation excluded),
which is the number users compare across variants and precisions.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


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
            # Under DDP each rank trains on its share: the run's throughput is the sum over ranks.
            pl_module.log("perf/train_images_per_s", self._images / elapsed, sync_dist=True, reduce_fx="sum")


class NonFiniteLossGuard(pl.Callback):
    """Stops training at the first NaN/inf training loss, before a checkpoint can store broken weights.

    Why not Lightning's `detect_anomaly` or EarlyStopping(check_finite): the first slows every step
    several-fold, the second only looks at the monitored metric once per validation. This costs one
    scalar check per step; checkpoints are written at epoch ends, so the newest one is from before the
    divergence.

    Usage: ``Trainer(callbacks=[NonFiniteLossGuard()])``
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or bool(torch.isfinite(loss.detach()).all()):
            return
        from harness.facts.errors import TrainingDiverged

        ckpt = trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "") or "none yet"
        raise TrainingDiverged(
            f"train/loss is {float(loss):.4g} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
            f"training stopped, last good checkpoint: {last}. Try a lower module.optimizer.lr, "
            f"trainer.gradient_clip_val=1.0 or precision 32-true"
        )
