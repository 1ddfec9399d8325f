"""NORTH's activation trigger (Maile et al. 2022, "When, where, and how to add new neurons to ANNs") as a
"where to grow" score: a layer whose activations use more of their dimensions than gamma x they did at
initialisation asks for new units.

As published, per layer l of width M_l, with H_l the [n, M_l] matrix of its post-activation outputs on n samples:

    phi(f, l) = #{sigma in SVD(H_l / sqrt(n)) : sigma > eps} / M_l          (effective-dimension fraction)
    T(f, l)   = max(0, floor(M_l (phi(f, l) - gamma phi(f_0, l))))           (units NORTH adds)

with f_0 the network at initialisation, eps = 0.01 and gamma = 0.9 (the paper's CIFAR settings). Unlike the
``effective_rank`` probe (centred activations, eps relative to sigma_max), eps is absolute and H is not centred,
as in the paper.

The score is ``phi - gamma phi_init``, the trigger before its width factor, floor and clip. Why: candidates are
compared at equal parameter cost, and ``M_l x`` the excess ranks wide layers first for their width alone; the
floor and the clip at 0 make most layers tie at 0. So a narrow layer that uses every dimension (phi = 1)
scores ``1 - gamma phi_init`` >= 0.1 and ranks above a wide layer whose activations collapsed. The trigger
itself is recorded too (``trigger``).

Samples: every (probe image, position) of a conv layer's map is a row (at most ``max_rows``, drawn with the
probe seed, as ``effective_rank``); the paper needs n > M_l. For CNNs the paper replaces phi(f_0) by the running
maximum of phi during training; a probe of one checkpoint has no history, so the init control is used as the
trigger is defined. Targets: as ``effective_rank`` (InceptionV1's stem layers and branches post-ReLU; any other
model: the convs/linears ``model.widen`` accepts, at their raw output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.facts.keys import NORTH, RANK_FRACTION, RANK_FRACTION_INIT, SCORE
from harness.models import layers
from harness.models.consumers import widen_candidates
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.effective_rank import sample_rows, unit_activations

EPS, GAMMA = 0.01, 0.9  # the paper's CIFAR settings (VGG-11 also swept gamma in 0.9, 0.97, 0.99)


def effective_dimension(acts: torch.Tensor, eps: float = EPS, max_rows: int = 4096, seed: int = 0) -> float:
    """phi: #{sigma(H / sqrt(n)) > eps} / units, H the uncentred [samples, units] activations.

    Usage: ``effective_dimension(torch.eye(4) * 2.0)``  # 1.0: four orthogonal units of norm 2 over 4 rows
    """
    rows = sample_rows(acts, max_rows, seed)
    if len(rows) == 0:
        return 0.0
    sigma = torch.linalg.svdvals(rows / math.sqrt(len(rows)))
    return float((sigma > eps).sum()) / acts.shape[1]


def trigger(phi: float, phi_init: float, units: int, gamma: float = GAMMA) -> int:
    """NORTH's number of units to add: max(0, floor(M (phi - gamma phi_init))), the floor taken 1e-9 above so float
    rounding (20 x (1 - 0.9) = 1.9999999999999996) does not drop a unit."""
    return max(0, math.floor(units * (phi - gamma * phi_init) + 1e-9))


class North(Probe):
    """Per widen target: ``fraction`` (phi), ``fraction_init`` (phi at a fresh init), ``score`` and ``trigger``.

    Usage: ``North().run(ctx).scalars["conv2d0/score"]`` (needs ``ctx.make_model`` for the init control)
    """

    name = NORTH

    def __init__(
        self, layers: Sequence[str] | None = None, eps: float = EPS, gamma: float = GAMMA, max_rows: int = 4096
    ) -> None:
        super().__init__(layers)
        if not float(eps) > 0:
            raise ConfigError(f"north.eps must be > 0 (an absolute singular-value threshold), got {eps!r}")
        if not 0 < float(gamma) <= 1:
            raise ConfigError(f"north.gamma must be in (0, 1] (a fraction of the init value), got {gamma!r}")
        if int(max_rows) < 2:
            raise ConfigError(f"north.max_rows must be >= 2, got {max_rows!r}")
        self.eps, self.gamma, self.max_rows = float(eps), float(gamma), int(max_rows)

    def _phis(self, ctx: ProbeContext, model: torch.nn.Module, targets: list[str]) -> dict[str, float]:
        acts = unit_activations(ctx, model, targets)
        return {t: effective_dimension(acts[t], self.eps, self.max_rows, ctx.seed) for t in targets}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        targets = self.layers or widen_candidates(ctx.model, int(ctx.probe_set.images.shape[-1]))
        units = layers(ctx.model)
        result = ProbeResult()
        phi = self._phis(ctx, ctx.model, targets)
        init: dict[str, float] = {}
        if ctx.make_model is not None:
            control = ctx.random_init_model()
            try:
                init = self._phis(ctx, control, targets)
            finally:
                ctx.forget(control)
        else:
            result.info["random_init"] = "ctx.make_model is None: no init control, so no score (NORTH needs it)"
        rows = []
        for t in targets:
            result.scalars[f"{t}/{RANK_FRACTION}"] = phi[t]
            row = {"target": t, "units": units[t], "fraction": phi[t], "fraction_init": init.get(t)}
            if t in init:
                result.scalars[f"{t}/{RANK_FRACTION_INIT}"] = init[t]
                row["score"] = result.scalars[f"{t}/{SCORE}"] = phi[t] - self.gamma * init[t]
                row["trigger"] = result.scalars[f"{t}/trigger"] = trigger(phi[t], init[t], units[t], self.gamma)
            rows.append(row)
        result.tables["targets"] = rows
        return result
