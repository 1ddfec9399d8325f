"""Shared toy models for probe tests: one named layer with hand-set weights, so every answer is known.

Why one module: the probe tests (ablation, examples, featvis, lineage) each need "a network with one
layer called `layer` whose units compute a chosen function of the colour channels"; written once here,
a change to the model interface probes rely on (`hook_points`, `channels`) is made in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.models.inception_v1 import ConvReLU


class OneLayerNet(nn.Module):
    """`layer` = ConvReLU(3 -> units, kernel) with the given weights (None: its random init), mean-pooled,
    then an optional linear head with `classes` outputs (random init unless `head` gives weight and bias).

    Usage: ``OneLayerNet([[1.0, 0, 0], [0, 1.0, 0]], bias=[0.0, 0.0], classes=2)``  # unit 0 = red, 1 = green
    """

    def __init__(
        self,
        weight: Sequence | torch.Tensor | None = None,
        bias: Sequence[float] | float | None = None,
        units: int | None = None,
        kernel: int = 1,
        classes: int | None = None,
        head: tuple[Sequence, Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        n = int(w.shape[0]) if w is not None else int(units)
        self.unit = ConvReLU(3, n, kernel)
        self.fc = nn.Linear(n, classes) if classes else None
        with torch.no_grad():
            if w is not None:  # [units, 3] colour weights, the same at every kernel position, or a full kernel
                self.unit.conv.weight.copy_(w.view(n, 3, 1, 1).expand(n, 3, kernel, kernel) if w.dim() == 2 else w)
            if bias is not None:
                self.unit.conv.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).expand(n))
            if head is not None:
                self.fc.weight.copy_(torch.as_tensor(head[0], dtype=torch.float32))
                self.fc.bias.copy_(torch.as_tensor(head[1], dtype=torch.float32))

    @property
    def channels(self) -> dict[str, int]:
        return {"layer": self.unit.conv.out_channels}

    def hook_points(self) -> dict[str, nn.Module]:
        return {"layer": self.unit}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.unit(x).mean(dim=(2, 3))
        return pooled if self.fc is None else self.fc(pooled)


# A training job small enough for subprocess sweep tests (Optuna storage, SLURM): 64 images, one epoch,
# no logger, probes or progress bar. Each test adds what its own setting needs.
TINY_JOB = [
    "data.train_size=64",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=16",
    "logger=none",
    "probes=none",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
]
