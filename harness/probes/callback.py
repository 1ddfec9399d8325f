"""The Lightning callback that runs the selected probes during and after training.

Why a callback: probes need the live network, the datamodule (for the probe set) and the loggers,
which Lightning hands to callbacks; cheap probes every N epochs show *when* structure forms, all
probes at the end give the run's verdict. The initial weights are kept as the CKA reference.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
from torch import nn

from harness.probes.base import Probe, ProbeContext
from harness.probes.memory import limit_bytes, probe_layers
from harness.probes.probe_set import ProbeSet
from harness.probes.runner import publish, record_outcomes, run_probes, save_outcomes
from harness.probes.timeout import check_limit
from harness.run.records import RunRecord

log = logging.getLogger(__name__)


class ProbeCallback(pl.Callback):
    """Runs probes on `pl_module.net`. Usage: ``Trainer(callbacks=[ProbeCallback({"activations": p}, record)])``"""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        record: RunRecord | None = None,
        run_dir: str | Path | None = None,
        layers: Sequence[str] | None = None,
        every_n_epochs: int = 0,
        budget_s: float | None = None,
        probe_timeout_s: float | None = None,
        probe_set_size: int = 512,
        probe_set_seed: int = 1234,
        batch_size: int = 128,
        max_activation_gb: float | None = None,
        seed: int = 0,
        widen: Mapping[str, int] | None = None,
        make_model: Callable[[], nn.Module] | None = None,
    ) -> None:
        self.probes = dict(probes)
        self.record = record
        self.run_dir = Path(run_dir) if run_dir else None
        self.layers = list(layers) if layers else None
        self.every_n_epochs = every_n_epochs
        self.budget_s = budget_s
        self.probe_timeout_s = check_limit(probe_timeout_s)  # a bad value fails before training, not after
        self.probe_set_size, self.probe_set_seed, self.batch_size = probe_set_size, probe_set_seed, batch_size
        self.max_activation_gb = max_activation_gb
        self.max_activation_bytes = limit_bytes(max_activation_gb)  # a bad value fails before training
        self.seed = seed
        self.widen = dict(widen or {})
        self.make_model = make_model
        self.ctx: ProbeContext | None = None
        self.reference: nn.Module | None = None
        self.seconds = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.probes and self.reference is None:
            # Before the first step: the run's own initial weights are the default CKA reference.
            self.reference = copy.deepcopy(pl_module.net).eval()
        elif self.reference is not None:  # set by the caller (a resumed run: its weights are restored by now)
            self.reference.to(pl_module.device)

    def _context(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> ProbeContext:
        if self.ctx is None:
            probe_set = ProbeSet.from_datamodule(trainer.datamodule, n=self.probe_set_size, seed=self.probe_set_seed)
            net = pl_module.net
            self.ctx = ProbeContext(
                model=net,
                layers=probe_layers(net, self.layers, probe_set.images, self.max_activation_gb, pl_module.device),
                probe_set=probe_set,
                reference=self.reference,
                make_model=self.make_model,
                widen=self.widen,
                device=pl_module.device,
                seed=self.seed,
                batch_size=self.batch_size,
                max_activation_bytes=self.max_activation_bytes,
            )
        self.ctx.weights_changed()  # since the last call
        return self.ctx

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, cheap_only: bool) -> None:
        if not self.probes or trainer.sanity_checking or getattr(trainer, "fast_dev_run", False):
            return
        if not trainer.is_global_zero:  # DDP: one probe round per run, on rank 0's (unwrapped) pl_module.net
            return
        started = time.perf_counter()
        ctx = self._context(trainer, pl_module)
        epoch = trainer.current_epoch
        outcomes = run_probes(self.probes, ctx, self.budget_s, cheap_only=cheap_only, timeout_s=self.probe_timeout_s)
        if self.run_dir is not None and not cheap_only:
            save_outcomes(outcomes, self.run_dir)
        done = epoch + 1 if cheap_only else epoch  # one-based, like the bar; at fit end the loop has counted it
        publish(outcomes, trainer.loggers, step=trainer.global_step, epoch=done)  # wandb: probe/epoch = epochs trained
        seconds = time.perf_counter() - started
        self.seconds += seconds
        log.info("probes (%s) after epoch %d/%s: %.1f s", "cheap" if cheap_only else "all", done,
                 trainer.max_epochs, seconds)  # fmt: skip
        if self.record is not None:
            self.record.data["probe_seconds"] = round(self.seconds, 2)  # all rounds, logging included
            record_outcomes(self.record, outcomes, epoch, final=not cheap_only)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self.every_n_epochs
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if n and (trainer.current_epoch + 1) % n == 0 and not last:
            self._run(trainer, pl_module, cheap_only=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module, cheap_only=False)
        self.reference = None
        if self.ctx is not None:
            self.ctx.weights_changed()
