"""Silence Lightning's and PyTorch's routine chatter, kept one setting away (`verbose=true`).

Why a filter list and not a lower log level: the same loggers and warning categories also carry messages a
researcher must see (a real deprecation in their code, a dataloader bottleneck, a failed checkpoint write), so
only these known, harmless messages are dropped, by their text:

- `GPU available: False, used: False`, `TPU available: ...` (and the HPU/IPU/LOCAL_RANK lines): the closing
  summary and the record say where the run ran;
- Lightning's `💡 Tip: ... litlogger` advert;
- ``Loading `train_dataloader` to estimate number of stepping batches.``;
- ``_pytree.py:21: `isinstance(treespec, LeafSpec)` is deprecated`` (Lightning's own use of a torch API);
- `The number of training batches (N) is smaller than the logging interval` on small runs (epoch metrics are
  logged anyway);
- `Checkpoint directory ... exists and is not empty` (a resumed run writes into its own checkpoint folder);
- `The srun command is available on your system but is not used` (printed on any machine with SLURM tools;
  `hydra/launcher=slurm` submits jobs itself);
- `Restoring states from the checkpoint path at ...`: `harness-train` says which checkpoint it tests instead;
- ``Trainer.fit` stopped: `max_epochs=N` reached.``: the epoch lines and the summary say so;
- `Using bfloat16 Automatic Mixed Precision (AMP)`: the closing summary's `precision` row and the record's
  `config.trainer.precision` say which precision ran (bf16-mixed is the default on CPUs with native bf16).
"""

from __future__ import annotations

import logging
import warnings

# Text at the start of each silenced log record (Lightning's rank_zero_info).
NOISE_LOGS = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "IPU available:",
    "LOCAL_RANK:",
    "💡 Tip:",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "Restoring states from the checkpoint path at",
    "Loaded model weights from the checkpoint at",
    "`Trainer.fit` stopped: `max_epochs=",
    "Using bfloat16 Automatic Mixed Precision (AMP)",
    "Using 16bit Automatic Mixed Precision (AMP)",
)
# Regular expressions matched against the start of each silenced warning message.
NOISE_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"Checkpoint directory .* exists and is not empty",
    r"The `srun` command is available on your system but is not used",
)
# Where Lightning logs its rank-zero messages (both package layouts; records are filtered where they are created).
_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
            "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")  # fmt: skip


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(NOISE_LOGS)


_FILTER = _DropNoise()


def silence(verbose: bool = False) -> None:
    """Drop the known noise (see the module docstring) unless `verbose` (then the log filter is removed again)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if verbose:
            logger.removeFilter(_FILTER)
        elif _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if verbose:
        return
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
