"""``model.widen_init=gradmax`` (Evci et al. 2022): new units with zero fan-in and the fan-out that makes the
fan-in's gradient as large as it can be at step 0.

With zero fan-in the network computes what it did, whatever the fan-out. The fan-in's gradient of a unit whose
fan-out is ``w_out`` is ``B^T w_out`` (B = E[g_next h_in^T], :mod:`harness.probes.gradmax`), so the k new units
take the top-k left singular vectors u_i of B as fan-out. Each is scaled to ``GRADMAX_FRACTION`` of the existing
units' mean fan-out norm F, and its fan-in gradient at step 0 is then ``F * GRADMAX_FRACTION * sigma_i * v_i``:
norm ``F * GRADMAX_FRACTION * sigma_i`` (recorded as ``predicted_grad``). Units beyond B's rank get a random unit
fan-out (sigma 0).

Why 0.5 of the mean: the new units' fan-in gradient is then half of what an existing unit with the same
direction would get; large enough to leave the saddle at the first step, small enough that a badly estimated
B (a few batches) cannot dominate the layer's read-out. The bias before the activation is ``ALIVE_BIAS``
(ReLU's slope at 0 is 0; see :mod:`harness.growth.new_units`).

Exact where the probe's B is exact (consumers reached without max pools or local response norm, eval-mode batch
norm); in training mode a batch norm right after the new unit rescales its fan-in gradient by 1/sqrt(eps) and
centres it, so the direction is B's on centred inputs and the norm larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from harness.growth.new_units import ALIVE_BIAS, Batch, NewUnits, passes
from harness.models.consumers import Wiring
from harness.probes.gradmax import gradmax_rows

GRADMAX_FRACTION = 0.5  # new fan-out norm / the existing units' mean fan-out norm


def b_matrices(net: nn.Module, batches: Sequence[Batch], wired: Sequence[Wiring]) -> dict[str, torch.Tensor]:
    """B = E[g_next h_in^T] per target (float64, rows fan-out, columns fan-in), on the fixed batches; also on a
    base network without new units (the oracle's ``gradmax_per_unit`` signal)."""
    sums: dict[str, torch.Tensor] = {}
    for p in passes(net, batches, wired):
        for w in wired:
            grads = [p.grads[id(c.module)] for c in w.consumers]
            part = gradmax_rows(w, p.inputs[id(w.producer)], grads).double().cpu()
            sums[w.target] = part if w.target not in sums else sums[w.target] + part
    return sums


def gradmax_init(
    net: nn.Module, batches: Sequence[Batch], found: Sequence[NewUnits], fraction: float = GRADMAX_FRACTION,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Write GradMax's new units into ``net`` in place; per target what was chosen and the predicted gradients."""
    bs = b_matrices(net, batches, [f.wiring for f in found])
    gen = torch.Generator().manual_seed(seed)
    record = {}
    for f in found:
        b = bs[f.target]
        u, s, _ = torch.linalg.svd(b, full_matrices=False)
        scale = fraction * f.mean_old("out")
        sigmas = []
        for i, unit in enumerate(f.units):
            if i < len(s) and float(s[i]) > 0:
                direction, sigma = u[:, i], float(s[i])
            else:  # beyond B's rank: any direction gives a zero gradient
                direction, sigma = torch.randn(b.shape[0], generator=gen, dtype=torch.float64), 0.0
                direction /= direction.norm()
            f.set_fan_in(unit, torch.zeros(b.shape[1]))
            f.set_fan_out(unit, (direction * scale).float())
            f.set_bias(unit, ALIVE_BIAS)
            sigmas.append(sigma)
        record[f.target] = {"init": "gradmax", "units": len(f.units), "sigma": sigmas,
                            "predicted_grad": [scale * x for x in sigmas], "fan_out_norm": scale,
                            "old_fan_out_norm": scale / fraction, "fraction": fraction,
                            "alive_bias": ALIVE_BIAS if f.bias is not None else None}  # fmt: skip
    return record
