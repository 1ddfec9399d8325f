"""Which process am I, and who failed first: the harness's side of multi-process (DDP) runs.

Why rank zero alone writes: under `trainer.strategy=ddp` every rank runs `train(cfg)`. The run record, probe
rounds, wandb and printed summaries describe the run once, so only global rank 0 does them; other ranks train
and take part in collectives. The rank comes from Lightning's `rank_zero_only.rank`, which Lightning sets from
the launcher's environment (`LOCAL_RANK`, `RANK`, `SLURM_PROCID`) at import and from the strategy at setup,
so it is right before the Trainer exists (the record is opened before it).

Why a first-failure file: when one rank fails, the others fail *because of it* (gloo: `Connection closed by
peer`), and Lightning's launcher SIGKILLs rank 0 within seconds of a child exiting non-zero. So the first rank
to fail claims `<run dir>/first_failure.json` (created exclusively, written before its sockets close);
rank 0's record and error line report that claim, and a non-zero rank that fails first marks the record failed
itself, because rank 0 may be killed before it can.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, DistributedSampler, Sampler

__all__ = [
    "FIRST_FAILURE",
    "rank",
    "is_rank_zero",
    "rank_zero_only",
    "claim_failure",
    "first_failure",
    "describe",
    "clear_failure",
    "mark_record_failed",
    "FirstFailure",
    "in_multiprocess_run",
    "note_failure",
    "other_rank_error",
    "rank_prefix",
    "traceback_name",
    "unsharded",
]

FIRST_FAILURE = "first_failure.json"


def rank() -> int:
    """The global rank of this process (0 outside distributed runs)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_rank_zero() -> bool:
    return rank() == 0


def _error_line(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def claim_failure(run_dir: str | os.PathLike, err: BaseException) -> dict[str, Any]:
    """Record `err` as the run's first failure unless another rank got there first; returns the first failure."""
    path = Path(run_dir) / FIRST_FAILURE
    entry = {"rank": rank(), "error": _error_line(err), "time": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return first_failure(run_dir) or entry
    except OSError:
        return entry  # unwritable run dir: report our own error
    with os.fdopen(fd, "w") as fh:
        json.dump(entry, fh)
    return entry


def first_failure(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The first failure claimed in this run directory, or None."""
    for _ in range(20):  # a claim being written right now: wait for its content (at most ~1 s)
        try:
            text = (Path(run_dir) / FIRST_FAILURE).read_text()
        except OSError:
            return None
        with contextlib.suppress(ValueError):
            return json.loads(text)
        time.sleep(0.05)
    return None


def clear_failure(run_dir: str | os.PathLike) -> None:
    """Forget an earlier attempt's failure (a resumed run starts clean). Rank 0, before other ranks start."""
    with contextlib.suppress(OSError):
        (Path(run_dir) / FIRST_FAILURE).unlink()


def describe(failure: dict[str, Any]) -> str:
    """`[rank N] Type: message` (no prefix for rank 0)."""
    prefix = f"[rank {failure['rank']}] " if failure.get("rank") else ""
    return f"{prefix}{failure['error']}"


def mark_record_failed(run_dir: str | os.PathLike, failure: dict[str, Any]) -> None:
    """A non-zero rank that failed first marks the on-disk record failed (rank 0 may be SIGKILLed any moment).

    Written atomically through a rank-specific temporary file, so it never collides with rank 0's writes.
    """
    from harness.facts.runs import RECORD_NAME

    path = Path(run_dir) / RECORD_NAME
    tmp = path.with_suffix(f".rank{rank()}.tmp")
    try:
        data = json.loads(path.read_text())
        data.update(status="failed", error=describe(failure))
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink()


class FirstFailure(pl.Callback):
    """Claims the first failure as soon as Lightning sees the exception, before the strategy tears down.

    Why so early: the other ranks see this rank's sockets close at teardown; by then the claim must exist so
    their secondary errors are not taken for the cause.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.world_size > 1:
            claim_failure(self.run_dir, exception)


def in_multiprocess_run(trainer: pl.Trainer | None = None) -> bool:
    """True inside a run of several processes (DDP ranks learn it from the launcher's WORLD_SIZE)."""
    if trainer is not None and trainer.world_size > 1:
        return True
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def rank_prefix() -> str:
    """`[rank N] ` on non-zero ranks, nothing on rank 0: error lines say which process they come from."""
    return f"[rank {rank()}] " if rank() else ""


def traceback_name() -> str:
    """Rank 0 keeps `traceback.txt`; other ranks write `traceback_rank<N>.txt` next to it."""
    return f"traceback_rank{rank()}.txt" if rank() else "traceback.txt"


def note_failure(run_dir: str | os.PathLike, err: BaseException, record: Any, trainer: pl.Trainer | None) -> None:
    """In a multi-process run: claim `err` as the first failure (or find the earlier one) and put it in the record."""
    if not in_multiprocess_run(trainer):
        return
    failure = claim_failure(run_dir, err)
    record.update(error=describe(failure))
    if failure["rank"] == rank() and rank() != 0:
        mark_record_failed(run_dir, failure)


def other_rank_error(run_dir: str | os.PathLike) -> str | None:
    """The error line to print when another rank failed first: `[rank N] cause (traceback: ...)` on rank 0,
    "" on other ranks (they stay silent), None when no other rank failed (print our own error)."""
    first = first_failure(run_dir)
    if first is None or first.get("rank") == rank():
        return None
    if rank():
        return ""
    where = Path(run_dir) / (f"traceback_rank{first['rank']}.txt" if first.get("rank") else "traceback.txt")
    return f"{describe(first)} (traceback: {where})"


class WholeSet(DistributedSampler):
    """Every item of `inner` on every rank. A DistributedSampler in type only, so Lightning keeps it in place
    instead of sharding (it never wraps a DistributedSampler): its sharding pads the last shard with repeats."""

    def __init__(self, inner: Sampler) -> None:  # no super().__init__: that one would shard
        self.inner = inner
        self.num_replicas, self.rank, self.shuffle, self.drop_last, self.epoch, self.seed = 1, 0, False, False, 0, 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def unsharded(loader: DataLoader) -> DataLoader:
    """`loader` with a sampler Lightning leaves alone under DDP: every rank tests the whole set.

    Why: Lightning shards a test loader with a DistributedSampler, which repeats items (or whole batches) until
    every rank has as many, so `test/acc` counted some images twice. When every rank sees every image once,
    the rank sums that torchmetrics and `sync_dist` form count each image N times, and every ratio (accuracy,
    per-class accuracy, mean loss) is the single-process one exactly, at the cost of N copies of a test pass."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=WholeSet(loader.sampler),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        persistent_workers=loader.persistent_workers,
    )
