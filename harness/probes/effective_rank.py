"""Effective rank of each widen target's activations, and relative to a fresh init (NORTH*, Maile et al. 2022).

NORTH's growth criteria ("When, where, and how to add new neurons to ANNs") read how many directions a
layer's activations actually use: a layer whose units span nearly all their dimensions has no slack and
asks for more units; one whose activations collapse onto a few directions has units to spare. The "*"
variants compare against the same layer at initialisation, since a random layer's rank sets the scale.

Per target: the activation matrix has one row per (probe image, position) sample (at most `max_rows`,
sampled with `ctx.seed`) and one column per unit; columns are centred; fraction = #{sigma_i > eps *
sigma_max} / units (0 for a layer that never varies). `fraction_init` is the same for a fresh random init
of the architecture (`ctx.make_model`), and `ratio_to_init` = fraction / fraction_init. With fewer rows
than units the rank, and so the fraction, is capped at rows / units: keep `max_rows` well above the widest
layer's width. Narrow layers often use every dimension (fraction 1.0 for many targets: ties), so
`entropy_fraction` adds the threshold-free effective rank of Roy & Vetterli (2007) over units.

Targets: InceptionV1's branches and stem layers (post-ReLU); on any other model the convs/linears that
``model.widen`` accepts (:func:`harness.models.consumers.widen_candidates`, keyed by module path), read at
their raw output (before batch norm and activation); a channels-last linear's units are its last axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.facts.keys import EFFECTIVE_RANK, RANK_FRACTION, RANK_FRACTION_INIT, RANK_RATIO_TO_INIT
from harness.models import hook_points, layers
from harness.models.consumers import widen_candidates
from harness.probes.base import Probe, ProbeContext, ProbeResult


def sample_rows(acts: torch.Tensor, max_rows: int, seed: int = 0) -> torch.Tensor:
    """The [samples, units] matrix of `acts` ([N, C, H, W]: every (image, position) is a sample; or [N, C]),
    float64, at most `max_rows` samples drawn with `seed` (shared with NORTH's probe, :mod:`harness.probes.north`)."""
    units = acts.shape[1]
    rows = acts.transpose(0, 1).reshape(units, -1).T if acts.dim() > 2 else acts  # [samples, units]
    if len(rows) > max_rows:
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:max_rows]
        rows = rows[pick]
    return rows.double()


def unit_activations(ctx: ProbeContext, model: torch.nn.Module, targets: list[str]) -> dict[str, torch.Tensor]:
    """`ctx.activations` of `targets` with the units on axis 1, as `sample_rows` reads them (a linear's units are
    its last axis). Shared with NORTH's probe."""
    acts = ctx.activations(targets, model=model)
    points = hook_points(model)
    return {t: acts[t].movedim(-1, 1) if isinstance(points.get(t), torch.nn.Linear) else acts[t] for t in targets}


def centred_spectrum(acts: torch.Tensor, max_rows: int, seed: int = 0) -> torch.Tensor:
    """Singular values (float64, descending) of the centred `sample_rows` of `acts`."""
    rows = sample_rows(acts, max_rows, seed)
    return torch.linalg.svdvals(rows - rows.mean(dim=0, keepdim=True))


def fraction_above(sigma: torch.Tensor, eps: float, units: int) -> float:
    """#{sigma_i > eps * sigma_max} / units; 0 for activations that never vary."""
    if len(sigma) == 0 or float(sigma[0]) <= 0.0:
        return 0.0
    return float((sigma > eps * sigma[0]).sum()) / units


def entropy_rank(sigma: torch.Tensor, units: int) -> float:
    """Roy & Vetterli's (2007) effective rank exp(H(sigma / sum sigma)) over `units`: the same question as
    `fraction_above` without a threshold, so layers that all pass it (1.0) still differ."""
    total = float(sigma.sum()) if len(sigma) else 0.0
    if total <= 0.0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(torch.exp(-(p * p.log()).sum())) / units


def rank_fraction(acts: torch.Tensor, eps: float, max_rows: int, seed: int = 0) -> float:
    """`fraction_above` of the centred spectrum of `acts`.

    Usage: ``rank_fraction(torch.cat([torch.eye(8), -torch.eye(8)]), eps=0.01, max_rows=100)``  # 1.0
    """
    return fraction_above(centred_spectrum(acts, max_rows, seed), eps, acts.shape[1])


class EffectiveRank(Probe):
    """Per widen target: `fraction` of dimensions used, the same at a fresh init, their ratio, `entropy_fraction`.

    Usage: ``EffectiveRank(eps=0.01).run(ctx).scalars["mixed3b_5x5/ratio_to_init"]``
    """

    name = EFFECTIVE_RANK

    def __init__(
        self, layers: Sequence[str] | None = None, eps: float = 0.01, max_rows: int = 4096, random_init: bool = True
    ) -> None:
        super().__init__(layers)
        if not 0.0 < float(eps) < 1.0:
            raise ConfigError(f"effective_rank.eps must be in (0, 1) (a fraction of sigma_max), got {eps!r}")
        if int(max_rows) < 2:
            raise ConfigError(f"effective_rank.max_rows must be >= 2, got {max_rows!r}")
        self.eps, self.max_rows, self.random_init = float(eps), int(max_rows), bool(random_init)

    def _spectra(self, ctx: ProbeContext, model: torch.nn.Module, targets: list[str]) -> dict[str, torch.Tensor]:
        acts = unit_activations(ctx, model, targets)
        return {t: centred_spectrum(acts[t], self.max_rows, ctx.seed) for t in targets}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        targets = self.layers or widen_candidates(ctx.model, int(ctx.probe_set.images.shape[-1]))
        units = layers(ctx.model)
        result = ProbeResult()
        trained = self._spectra(ctx, ctx.model, targets)
        init: dict[str, float] = {}
        if self.random_init and ctx.make_model is not None:
            control = ctx.random_init_model()
            try:
                spectra = self._spectra(ctx, control, targets)
                init = {t: fraction_above(s, self.eps, units[t]) for t, s in spectra.items()}
            finally:
                ctx.forget(control)
        else:
            result.info["random_init"] = "disabled in config" if not self.random_init else "ctx.make_model is None"
        rows = []
        for t in targets:
            fraction, entropy = fraction_above(trained[t], self.eps, units[t]), entropy_rank(trained[t], units[t])
            result.scalars[f"{t}/{RANK_FRACTION}"] = fraction
            result.scalars[f"{t}/entropy_fraction"] = entropy
            row = {"target": t, "units": units[t], "fraction": fraction, "fraction_init": init.get(t),
                   "ratio_to_init": None, "entropy_fraction": entropy}  # fmt: skip
            if t in init:
                result.scalars[f"{t}/{RANK_FRACTION_INIT}"] = init[t]
                if init[t] > 0:
                    row["ratio_to_init"] = result.scalars[f"{t}/{RANK_RATIO_TO_INIT}"] = fraction / init[t]
            rows.append(row)
        result.tables["targets"] = rows
        return result
