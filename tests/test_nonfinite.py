"""A loss that turns NaN stops the run with a clear message, keeps the last good checkpoint and record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from harness.run.records import RunRecord


class PoisonWeights(pl.Callback):
    """Sets the first conv's weights to NaN as epoch `epoch` starts: a planted divergence."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness.train", "data.train_size=128", "data.val_size=32", "data.test_size=32",
           "data.batch_size=32", "trainer.max_epochs=3", "logger=none", "probes=none",
           "+callbacks.poison._target_=tests.test_nonfinite.PoisonWeights", f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "TrainingDiverged" in errors[0] and "nan" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr.split("error:")[-1]
    record = RunRecord.load(tmp_path / "run")
    assert record["status"] == "failed" and "train/loss is nan at epoch 1" in record["error"]
    assert [row["epoch"] for row in record["epochs"]] == [0]  # the good epoch is kept
    last = Path(record["checkpoints"]["last"])
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert state and all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
