"""Activation statistics per layer: dead units, sparsity and scale.

Why: the cheapest signal that a layer is healthy. Dead units (never positive on the probe set)
waste capacity and often appear after a widen edit or a too-high learning rate; sparsity and the
activation scale show drift across training long before accuracy moves. Everything is computed
from the shared activation cache (`ctx.activations()`), so this probe costs no extra forward pass.

A unit is one channel; "positions" are every image and every spatial location of the probe set.
"""

from __future__ import annotations

import math

import torch

from harness.facts.keys import DEAD_FRACTION
from harness.probes.base import Probe, ProbeContext, ProbeResult

_FILTER_MIN, _SAMPLE = 1 << 20, 1 << 16  # top_values: rows this long are filtered first; sample size for the cut


def as_maps(acts: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] as is; [N, F] (a linear layer) as [N, F, 1, 1], so every layer has positions."""
    return acts if acts.dim() == 4 else acts.reshape(acts.shape[0], -1, 1, 1)


def per_unit(acts: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [C, N*H*W]: one row of positions per unit (a copy, contiguous)."""
    return as_maps(acts).transpose(0, 1).reshape(acts.shape[1], -1)


def upper_quantile(rows: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of each row of [R, M], as `torch.quantile(rows, q, dim=1)` (linear interpolation).

    Why not torch.quantile: it refuses inputs over 16M elements and sorts every row in full; for
    the high quantiles probes use (0.99, 0.995) a `topk` of the top (1 - q) share is much cheaper.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    m = rows.shape[1]
    pos = q * (m - 1)
    lo = min(int(math.floor(pos)), m - 1)
    frac = pos - lo
    k = m - lo  # the k largest values end with sorted[lo] (ascending order)
    top = top_values(rows, k)  # descending
    low = top[:, k - 1]
    high = top[:, k - 2] if k >= 2 else low
    return low + frac * (high - low)


def top_values(rows: torch.Tensor, k: int) -> torch.Tensor:
    """`torch.topk(rows, k, dim=1).values` (descending); for one long row, selected among the values above a cut.

    Why: a layer's quantile is a topk over ONE row of all its activations (~300M values for conv2d2 of the
    full InceptionV1 at 224 px), which runs on one thread. A parallel comparison against a cut taken from a
    seeded sample keeps ~1.5 k candidates; when at least k pass, the k largest are all among them, so the
    values are exactly topk's. Otherwise (too few or too many pass, or NaNs, which topk ranks first) plain topk.
    """
    m = rows.shape[1]
    if rows.shape[0] == 1 and m >= _FILTER_MIN and 4 * k <= m and not math.isnan(float(rows.amax())):
        row = rows[0]
        sample = row[torch.randint(m, (_SAMPLE,), generator=torch.Generator().manual_seed(0))]
        cut = torch.topk(sample, min(_SAMPLE, int(1.5 * k * _SAMPLE / m) + 64)).values[-1]
        keep = row >= cut
        if k <= int(torch.count_nonzero(keep)) <= m // 8:  # many ties at the cut (zeros): no saving
            return torch.topk(row[keep], k, sorted=True).values[None]
    return torch.topk(rows, k, dim=1, sorted=True).values


class ActivationStats(Probe):
    """Per layer: dead-unit fraction, sparsity, mean and 99th-percentile activation; per unit: a table row.

    Usage: ``ActivationStats(layers=["mixed3b"]).run(ctx).scalars["mixed3b/dead_fraction"]``

    Scalars per layer: `dead_fraction` (units never > 0 at any position of the probe set), `sparsity`
    (mean fraction of zero activations), `mean_activation`, `p99_activation` (the layer's `quantile`
    over all its activations). Table "units": layer, unit, dead, mean, max, frac_active.
    """

    name = "activations"
    cheap = True

    def __init__(self, layers: list[str] | None = None, quantile: float = 0.99) -> None:
        super().__init__(layers)
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"activations.quantile must be in [0, 1], got {quantile}")
        self.quantile = float(quantile)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        layers = self.target_layers(ctx)
        result = ProbeResult()
        rows = []
        for layer, acts in ctx.activations(layers).items():
            units = per_unit(acts)  # [C, positions]
            active = units > 0
            frac_active = active.float().mean(dim=1)
            unit_max = units.amax(dim=1)
            unit_mean = units.mean(dim=1)
            dead = ~active.any(dim=1)
            result.scalars[f"{layer}/{DEAD_FRACTION}"] = float(dead.float().mean())
            result.scalars[f"{layer}/sparsity"] = float(1.0 - frac_active.mean())
            result.scalars[f"{layer}/mean_activation"] = float(unit_mean.mean())
            result.scalars[f"{layer}/p99_activation"] = float(upper_quantile(units.reshape(1, -1), self.quantile)[0])
            rows += [
                {"layer": layer, "unit": c, "dead": d, "mean": mu, "max": mx, "frac_active": fa}
                for c, (d, mu, mx, fa) in enumerate(
                    zip(dead.tolist(), unit_mean.tolist(), unit_max.tolist(), frac_active.tolist())
                )
            ]
        result.tables["units"] = rows
        return result
