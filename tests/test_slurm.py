"""`hydra/launcher=slurm` against a real single-node SLURM (tests/slurm_cluster.py): a 2-job sweep to the CPU
partition lands two finished records that harness-compare reads, and a job that fails inside SLURM is failed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.run.records import RunRecord
from tests.helpers import TINY_JOB
from tests.slurm_cluster import SlurmCluster, missing_binaries, slurm_cluster

_missing = missing_binaries()
pytestmark = [
    pytest.mark.skipif(
        bool(_missing),
        reason=f"SLURM test cluster needs Debian's slurm-wlm and munge (missing: "
        f"{', '.join(_missing)}); install with `apt-get install -y slurm-wlm munge` (.ci/run does)",
    ),
    pytest.mark.skipif(
        hasattr(os, "geteuid") and os.geteuid() != 0,
        reason="slurmd must run as root to start jobs; run the SLURM tests as root (as CI does)",
    ),
]

SMALL = [*TINY_JOB, "trainer.accelerator=cpu"]
# What the CPU partition of this one-node cluster can give each job.
CPU_JOB = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=cpu",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=20",
]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def _sweep(cluster: SlurmCluster, sweep_dir: Path, *args: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        *CPU_JOB,
        *args,
        *SMALL,
        f"paths.log_dir={sweep_dir.parent}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env, cwd=Path(__file__).parents[1]
    )


def _slurm_jobs(sweep_dir: Path) -> list[str]:
    """The SLURM job ids submitit used (array tasks `<id>_<index>`), from its bookkeeping folders."""
    return sorted(p.parent.name for p in (sweep_dir / ".submitit").glob("*/*_submitted.pkl"))


def test_two_job_sweep_runs_on_slurm_and_a_failing_job_is_failed(slurm: SlurmCluster, tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    started = time.perf_counter()
    procs = [_sweep(slurm, good, "seed=0,1"), _sweep(slurm, bad, "model.width=-1")]  # submitted together
    (out_good, _), (out_bad, _) = (p.communicate(timeout=1200) for p in procs)
    print(f"SLURM: submission to all records {time.perf_counter() - started:.1f} s")
    assert procs[0].returncode == 0, out_good[-3000:] + slurm.logs()

    records = [RunRecord.load(good / str(i)) for i in (0, 1)]
    assert [(r["status"], r["seed"]) for r in records] == [("finished", 0), ("finished", 1)]
    assert all(r["test"]["test/acc"] is not None for r in records)
    jobs = _slurm_jobs(good)
    assert len(jobs) == 2 and [slurm.final_state(j) for j in jobs] == ["COMPLETED", "COMPLETED"]
    assert "--partition=cpu" in next((good / ".submitit").glob("*/*_submission.sh")).read_text()

    cmp = subprocess.run(
        [sys.executable, "-m", "harness.compare", str(good), "--out", str(tmp_path / "cmp")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    rows = (tmp_path / "cmp" / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",finished," in row for row in rows[1:])

    # the failing job: its record says failed with the cause, and the sweep exits non-zero naming it
    assert procs[1].returncode != 0
    failed = RunRecord.load(bad / "0")
    assert failed["status"] == "failed" and "model.width" in failed["error"], out_bad[-3000:]
    assert "model.width" in out_bad
    assert len(_slurm_jobs(bad)) == 1
