"""Rebuild a trained network from a checkpoint written by harness-train, wherever the file now lives.

Why: probes, ``model.init_from`` and scripts start from checkpoints. A checkpoint carries its architecture
(the resolved model config, edits included), its classes and its run's data config, so it is rebuilt
from the file alone; checkpoints written before that are rebuilt through their run's record.json.
The work is done by the model-building pipeline (:mod:`harness.models.build`); this module is the
entry for run-level callers.

Usage: ``net, run = load_net("outputs/2026-11-22/20-48-54/checkpoints/last.ckpt")``
"""

from __future__ import annotations

from pathlib import Path

from harness.models.build import CHECKPOINT_KEY, load_net, run_of
from harness.runs import RECORD_NAME, record_of_checkpoint

__all__ = ["CHECKPOINT_KEY", "find_record", "load_net", "run_of"]


def find_record(ckpt: Path) -> Path:
    """The record.json of the run a checkpoint belongs to (the checkpoint's folder or its parent)."""
    from harness.errors import ConfigError

    found = record_of_checkpoint(ckpt)
    if found is None:
        raise ConfigError(f"no {RECORD_NAME} next to checkpoint {ckpt}: pass the run's model config instead")
    return found
