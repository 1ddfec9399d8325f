"""At the end of a multirun, one line that uploads every offline wandb run of the sweep.

Why a Hydra callback: each job prints its own `wandb sync <folder>` in its summary, and a 2 x 4 sweep then ends
with eight commands scrolled away; the sweep folder knows all of them. Registered in conf/hydra/default.yaml.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

OFFLINE_GLOB = "offline-run-*"


def sync_command(sweep_dir: str | Path) -> str | None:
    """`wandb sync <sweep>/*/wandb/offline-run-*` covering every offline run below the sweep folder; None if none."""
    sweep = Path(sweep_dir)
    found = sorted(p for p in sweep.rglob(f"wandb/{OFFLINE_GLOB}") if p.is_dir())
    if not found:
        return None
    patterns = dict.fromkeys(  # one pattern per depth: jobs, and the rounds of a grow-loop job
        "/".join(["*", *p.relative_to(sweep).parts[1:-1], OFFLINE_GLOB]) for p in found
    )
    return "wandb sync " + " ".join(f"{shlex.quote(str(sweep))}/{pattern}" for pattern in patterns)


class SyncOfflineRuns(Callback):
    """Prints `wandb: sync the sweep's N offline runs with: wandb sync ...` once every job has run."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        command = sync_command(sweep)
        if command is not None:
            n = sum(1 for p in sweep.rglob(f"wandb/{OFFLINE_GLOB}") if p.is_dir())
            print(f"wandb: sync the sweep's {n} offline run folders with: {command}", flush=True)
