"""A real single-node SLURM cluster for tests: munged, slurmctld and slurmd on localhost, from Debian's
`slurm-wlm` and `munge` packages (`.ci/run` installs them; `apt-get install -y slurm-wlm munge` by hand).

Why real daemons and not submitit's local executor: what breaks on a cluster is what the local executor skips:
sbatch's resource flags (partition, `--gpus-per-node`), the job's environment, and where logs and records land.
Everything lives in one temporary folder (config, state, spool, logs, munge socket and key), with ports picked
free, so the cluster neither needs nor touches a system-wide SLURM or munge. Clients find it through
`SLURM_CONF`, which `env()` sets; the daemons are stopped (by their own pids) at the end.

No accounting database (slurmdbd needs MySQL): `sacct` is unavailable, so submitit cannot read job states and
learns that a job ended from its result file; `scontrol show job` still reports states while the job is
recent (MinJobAge).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")
PARTITION = "cpu"


def missing_binaries() -> list[str]:
    """Which of the needed programs are not installed (munged lives in /usr/sbin, often not on PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in DAEMONS if shutil.which(name, path=path) is None]


def _which(name: str) -> str:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])) or name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 2048


def write_conf(root: Path, cpus: int, memory_mb: int) -> Path:
    """A minimal slurm.conf: one node (this host, `cpus` CPUs), one partition `cpu`, no cgroups, no accounting."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=harness-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root / "munge.sock"}
CredType=cred/munge
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
SlurmdTimeout=60
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


class SlurmCluster:
    """The running cluster: `env` for clients (SLURM_CONF), `partition`, `logs()` for failure messages."""

    def __init__(self, root: Path, conf: Path) -> None:
        self.root, self.conf, self.partition = root, conf, PARTITION
        self.env = {**os.environ, "SLURM_CONF": str(conf)}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((self.root / "log").glob("*")))

    def job_state(self, job_id: str) -> str:
        """`JobState` from `scontrol show job` (COMPLETED, FAILED, RUNNING, ...)."""
        out = subprocess.run(
            [_which("scontrol"), "show", "job", job_id], capture_output=True, text=True, env=self.env
        ).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def final_state(self, job_id: str, timeout: float = 60.0) -> str:
        """`job_state` once the job has left SLURM's live states. Why: a job's output (and submitit's result) lands
        before slurmd reports it ended, so right after the sweep returns a finished job can still show RUNNING."""
        deadline = time.monotonic() + timeout
        state = self.job_state(job_id)
        while state in {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"} and time.monotonic() < deadline:
            time.sleep(0.5)
            state = self.job_state(job_id)
        return state


def _wait_node_idle(cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = subprocess.run([_which("sinfo"), "-h", "-o", "%t"], capture_output=True, text=True, env=cluster.env)
        state = proc.stdout.strip()
        if proc.returncode == 0 and state.startswith(("idle", "mix", "alloc")):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the test SLURM node did not come up (sinfo: {state!r})\n{cluster.logs()}")


@contextmanager
def slurm_cluster(root: Path, cpus: int | None = None, timeout: float = 60.0) -> Iterator[SlurmCluster]:
    """Start munged + slurmctld + slurmd under `root`, yield the cluster, stop the daemons."""
    root.mkdir(parents=True, exist_ok=True)
    cpus = cpus or os.cpu_count() or 1
    conf = write_conf(root, cpus, max(1024, _memory_mb() - 512))
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cluster = SlurmCluster(root, conf)
    procs: list[subprocess.Popen] = []
    log = open(root / "log" / "daemons.out", "w")  # noqa: SIM115 - closed below
    try:
        procs.append(
            subprocess.Popen(
                [
                    _which("munged"),
                    "--foreground",
                    "--force",
                    f"--socket={root / 'munge.sock'}",
                    f"--key-file={key}",
                    f"--pid-file={root / 'munged.pid'}",
                    f"--log-file={root / 'log' / 'munged.log'}",
                    f"--seed-file={root / 'munge.seed'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + timeout
        while not (root / "munge.sock").exists():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start\n{cluster.logs()}")
            time.sleep(0.1)
        procs.append(
            subprocess.Popen(
                [_which("slurmctld"), "-D", "-i", "-f", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=cluster.env,
            )
        )
        procs.append(
            subprocess.Popen(
                [_which("slurmd"), "-D", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT, env=cluster.env
            )
        )
        _wait_node_idle(cluster, timeout)
        yield cluster
    finally:
        for proc in reversed(procs):  # only the daemons started here, by their own handles
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
