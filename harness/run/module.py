"""The LightningModule that trains every variant: one `model_step` shared by train/val/test.

Why one module for all architectures: variants differ only in the network (pure config), so the
training loop, metrics and their names (`train/loss`, `val/acc`, `val/acc/<class>`) stay identical
across a sweep and runs are comparable.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from harness.facts import keys


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.03
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero, stepped per batch.

    Why: short CPU runs (a few epochs) need the whole schedule to fit the run length, which is only
    known once the trainer has counted its batches.
    """
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ClassifierModule(pl.LightningModule):
    """Image classification with overall and per-class accuracy.

    Usage: ``ClassifierModule(net, class_names=["line", "corner"], optimizer=partial(torch.optim.AdamW, lr=1e-3))``
    """

    def __init__(
        self,
        net: nn.Module,
        class_names: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        channels_last: bool = True,
        checkpoint_meta: Mapping[str, Any] | None = None,
        schedule_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        # What rebuilds `net` from a checkpoint file alone (harness.run.builders.checkpoint_meta); saved in every one.
        self.checkpoint_meta = dict(checkpoint_meta) if checkpoint_meta else None
        self.class_names = list(class_names)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.channels_last = channels_last
        # The schedule's length when it spans several runs (a grow chain's budget); None: this run's steps.
        self.schedule_steps = None if schedule_steps is None else int(schedule_steps)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        n = len(self.class_names)
        self.criterion = nn.CrossEntropyLoss()
        # One accuracy object per stage (torchmetrics accumulates across batches); keys avoid nn.Module.train.
        self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(n, average="micro") for s in ("train", "val", "test")})
        self.class_acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(n, average="none") for s in ("val", "test")})
        self.val_acc_best = 0.0  # `val/acc_best`; kept in checkpoints so a resumed run goes on from it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the architecture with the weights (as nanoGPT stores `model_args`): see harness.models.build."""
        offset = self.growth.step if self.growth is not None and self.growth.old_state is not None else 0
        checkpoint[keys.SCHEDULE_STEP_KEY] = offset + int(self.global_step)  # where a carried schedule goes on
        checkpoint["val_acc_best"] = self.val_acc_best
        if self.checkpoint_meta is not None:
            from harness.models.build import CHECKPOINT_KEY

            checkpoint[CHECKPOINT_KEY] = {**self.checkpoint_meta, "classes": list(self.class_names)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_acc_best = float(checkpoint.get("val_acc_best", 0.0))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (the world stores them compactly) become float in [0, 1]; layout follows the net."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def model_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.criterion(logits, y)
        preds = logits.argmax(dim=1)
        if stage == "train":  # the per-batch value; `train/loss` is the epoch mean, like val/loss (not `_epoch`)
            self.log(keys.TRAIN_LOSS_STEP, loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        # sync_dist: the epoch mean over all DDP ranks (torchmetrics objects below sync themselves).
        self.log(keys.stage_metric(stage, keys.LOSS), loss, on_step=False, on_epoch=True, prog_bar=stage != "train",
                 batch_size=len(y), sync_dist=True)  # fmt: skip
        self.acc[f"{stage}_acc"].update(preds, y)
        accuracy = self.acc[f"{stage}_acc"]
        self.log(keys.stage_metric(stage, keys.ACC), accuracy, on_step=False, on_epoch=True, prog_bar=True)
        if f"{stage}_acc" in self.class_acc:
            self.class_acc[f"{stage}_acc"].update(preds, y)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self.model_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.model_step(batch, "test")

    def _log_class_acc(self, stage: str) -> None:
        metric = self.class_acc[f"{stage}_acc"]
        per_class = metric.compute()
        for name, value in zip(self.class_names, per_class):
            self.log(keys.class_acc(stage, name), value, sync_dist=True)  # equal on all ranks (compute() synced)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:  # the best so far, as the checkpoint picks it (wandb charts it)
            self.val_acc_best = max(self.val_acc_best, float(self.acc["val_acc"].compute()))
            self.log(keys.VAL_ACC_BEST, self.val_acc_best)
        self._log_class_acc("val")

    def on_test_epoch_end(self) -> None:
        self._log_class_acc("test")

    # A continued, grown run's carried optimizer state and new-unit LR (harness.growth.carry.Growth), set by the entry
    # point; the schedule then goes on from the carried step and ends at this run's last step.
    growth: Any = None

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        offset = self.growth.attach(optimizer, self) if self.growth is not None else 0
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["total_steps"] = self.schedule_steps or int(self.trainer.estimated_stepping_batches) + offset
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        if self.growth is not None:
            self.growth.advance(scheduler)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
