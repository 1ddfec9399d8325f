"""SensLI (Kreis et al. 2023) for inserts: how much the loss wants a new block at each insert position.

SensLI inserts a layer that starts as the identity, so the network is unchanged, and ranks positions by the
norm of the loss gradient with respect to the new layer's parameters: a first-order estimate of how fast
training would use it. Here the new block is a residual convolution y = x + conv(x) with zero weights
(kernel `kernel`, "same" padding), placed after a mixed block whose output is x. At zero weights y = x, so
the gradient at y is the gradient g at the block output, and

    dL/dW[o, (i, d)] = E_n sum_q g[n, o, q] unfold(x)[n, (i, d), q]       (q: positions, d: kernel offsets)

which needs no built block: one backward pass gives g and x at every position at once. score = ||dL/dW||_F
(the bias, whose gradient is E sum_q g, is left out: it measures the block's offset, not what it computes).
Positions come from `harness.models.consumers.insert_positions` (InceptionV1: after every mixed block).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.facts.keys import SCORE, SENSLI
from harness.models import hook_points
from harness.models.consumers import insert_positions
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.gradients import loss_gradients


def residual_weight_grad(x: torch.Tensor, g: torch.Tensor, kernel: int) -> torch.Tensor:
    """dL/dW [C_out, C_in * kernel^2] of a zero-initialised residual conv on `x` [n, C, H, W] given dL/dy = `g`."""
    # sum_{n,q} g[n, o, q] unfold(x)[n, (i, d), q] is a conv's weight gradient (oneDNN; im2col + einsum ran up
    # to ~300x slower on a loaded 2-core machine)
    size = (g.shape[1], x.shape[1], kernel, kernel)
    return torch.nn.grad.conv2d_weight(x.float(), size, g.float(), padding=kernel // 2).reshape(size[0], -1)


class SensLI(Probe):
    """Per insert position: the gradient norm of a zero-initialised residual conv block inserted there.

    Usage: ``SensLI(kernel=3).run(ctx).scalars["mixed3b/score"]``
    """

    name = SENSLI

    def __init__(self, layers: Sequence[str] | None = None, kernel: int = 3, max_images: int | None = 256) -> None:
        super().__init__(layers)
        if isinstance(kernel, bool) or int(kernel) < 1 or int(kernel) % 2 == 0:
            raise ConfigError(f"sensli.kernel must be an odd integer >= 1 (same padding), got {kernel!r}")
        if max_images is not None and int(max_images) < 1:
            raise ConfigError(f"sensli.max_images must be null (all) or >= 1, got {max_images!r}")
        self.kernel, self.max_images = int(kernel), None if max_images is None else int(max_images)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        valid = insert_positions(ctx.model)
        positions = self.layers or valid
        if unknown := [p for p in positions if p not in valid]:
            raise ConfigError(f"unknown insert position {unknown[0]!r} for sensli; valid: {', '.join(valid)}")
        points = hook_points(ctx.model)
        modules = [points[p] for p in positions]
        sums: dict[str, torch.Tensor] = {}
        for batch in loss_gradients(ctx, modules, max_images=self.max_images):
            for p, m in zip(positions, modules):
                part = residual_weight_grad(batch.outputs[id(m)], batch.grads[id(m)], self.kernel).double()
                sums[p] = part if p not in sums else sums[p] + part
        result = ProbeResult()
        rows = []
        for p in positions:
            score = float(torch.linalg.matrix_norm(sums[p]))
            result.scalars[f"{p}/{SCORE}"] = score
            rows.append({"position": p, "score": score, "channels": sums[p].shape[0], "params": sums[p].numel()})
        result.tables["positions"] = rows
        return result
