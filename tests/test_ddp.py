"""DDP on CPU (gloo, 2 processes): one run record, one wandb run, one probe round, test metrics, resume of a
killed DDP run, and the first failing rank's real cause in the error line and the record.

Small on purpose (the CI machine has 2 cores): 256 training images, batches of 32, 2 epochs. 96 test images are 3
batches, which two ranks cannot split evenly: Lightning's DistributedSampler would repeat one to pad the shards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch.distributed

from harness.run.records import RECORD_NAME, RunRecord
from harness.run.wandb_offline import read_offline_run

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

DDP = [
    "trainer.accelerator=cpu",
    "trainer.strategy=ddp",
    "trainer.devices=2",
    "data.train_size=256",
    "data.val_size=64",
    "data.test_size=96",
    "data.batch_size=32",
    "trainer.enable_progress_bar=false",
    "probes=[activations]",
    "logger=wandb",
]


class KillAtEpochStart(pl.Callback):
    """Every rank SIGKILLs itself as epoch `epoch` starts when HARNESS_TEST_KILL is set (a node lost mid-run)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if os.environ.get("HARNESS_TEST_KILL") and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class FailOnRank(pl.Callback):
    """Raises on one rank only at the first training batch: the other rank then fails *because* of it."""

    def __init__(self, rank: int = 1) -> None:
        self.rank = rank

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == self.rank:
            raise RuntimeError(f"planted failure on rank {self.rank}")


def _train(run_dir: Path, *args: str, kill: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("HARNESS_TEST_KILL", None)
    if kill:
        env["HARNESS_TEST_KILL"] = "1"
    cmd = [sys.executable, "-m", "harness.train", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=Path(__file__).parents[1])


def _log_count(root: Path, text: str) -> int:
    """How often any rank of any attempt logged `text` (rank 0 logs to train.log, rank N to
    train_ddp_process_N.log, in the folder of the command that ran: a resume logs next to its own launch)."""
    return sum(log.read_text().count(text) for log in root.glob("*/*.log"))


def _single_process_test_acc(record: dict) -> float:
    """test/acc of the run's best checkpoint on the whole test set, in this one process, as train() tests it."""
    import hydra
    import torch

    from harness.models import load_net

    cfg = record["config"]
    datamodule = hydra.utils.instantiate(cfg["data"])
    datamodule.setup("test")
    layout = torch.channels_last if cfg["module"].get("channels_last", True) else torch.contiguous_format
    net, _ = load_net(record["checkpoints"]["best"])
    net = net.eval().to(memory_format=layout)  # as ClassifierModule runs it
    bf16 = str(cfg["trainer"]["precision"]).startswith("bf16")
    correct = total = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for x, y in datamodule.test_dataloader():
            x = x.float().div_(255.0).contiguous(memory_format=layout)
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    assert total == 96
    return correct / total


def test_killed_ddp_run_resumes_to_one_finished_record(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    kill = "+callbacks.kill._target_=tests.test_ddp.KillAtEpochStart"
    started = time.perf_counter()
    proc = _train(run, *DDP, "trainer.max_epochs=2", kill, f"paths.log_dir={tmp_path}", kill=True)
    assert proc.returncode != 0
    crashed = RunRecord.load(run)
    assert crashed["status"] == "running" and len(crashed["epochs"]) == 1, proc.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()

    proc = _train(tmp_path / "resumer", f"resume={run}", f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"DDP killed + resumed: {time.perf_counter() - started:.1f} s")
    assert [p.parent for p in tmp_path.rglob(RECORD_NAME)] == [run]  # exactly one record, rank 0's
    record = RunRecord.load(run)
    assert record["status"] == "finished" and "error" not in record
    assert record["resumed"][0]["epochs_done"] == 1 and [row["epoch"] for row in record["epochs"]] == [0, 1]
    assert record["test"]["test/acc"] is not None and "test/acc/line" in record["test"]
    assert record["config"]["trainer"]["strategy"] == "ddp" and record["config"]["trainer"]["devices"] == 2
    # both ranks trained: the logged throughput is their sum, the record's epoch counts the global steps
    assert record["epochs"][-1]["step"] == 2 * (256 // 32 // 2)
    assert "activations" in record["probes"] and _log_count(tmp_path, "probes (all)") == 1
    # test/acc counts each test image once (no DistributedSampler padding): the single-process number exactly;
    # "testing the best checkpoint" is said once, by rank 0
    assert record["test"]["test/acc"] == pytest.approx(_single_process_test_acc(record), abs=1e-6)
    assert _log_count(tmp_path, "testing the best checkpoint") == 1
    # one wandb run (killed + resumed = two offline folders of the same id), written by rank 0 only
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert {f.name.rsplit("-", 1)[-1] for f in folders} == {record["wandb"]["id"]} and len(folders) == 2
    resumed = read_offline_run(next(folders[-1].glob("run-*.wandb")))
    assert any("test/acc" in row for row in resumed.history)


def test_first_failing_rank_is_reported(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    fail = "+callbacks.fail._target_=tests.test_ddp.FailOnRank"
    proc = _train(run, *DDP, "trainer.max_epochs=1", fail, "logger=none", f"paths.log_dir={tmp_path}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and all("[rank 1] RuntimeError: planted failure on rank 1" in line for line in errors), errors
    record = RunRecord.load(run)
    assert record["status"] == "failed" and record["error"] == "[rank 1] RuntimeError: planted failure on rank 1"
    assert "planted failure" in (run / "traceback_rank1.txt").read_text()


def test_rank_zero_helpers_follow_lightning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Negative control for the DDP tests: on rank 1 nothing is written, on rank 0 the record is."""
    from harness.run import distributed
    from harness.run.distributed import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert distributed.rank() == 1 and not distributed.is_rank_zero()
    RunRecord(tmp_path).save()
    assert not (tmp_path / RECORD_NAME).exists()
    assert distributed.claim_failure(tmp_path, ValueError("first"))["rank"] == 1
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert distributed.claim_failure(tmp_path, ValueError("second"))["error"] == "ValueError: first"
    assert distributed.other_rank_error(tmp_path).startswith("[rank 1] ValueError: first")
    RunRecord(tmp_path).save()
    assert (tmp_path / RECORD_NAME).exists()
