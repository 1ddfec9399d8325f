"""Data-free weight spectra per conv unit: stable rank, spectral norm and the power-law exponent alpha.

Heavy-Tailed Self-Regularisation (Martin & Mahoney 2021, the WeightWatcher tool) reads training quality
from weights alone: the eigenvalues of W W^T (the empirical spectral density, ESD) of a well-trained layer
have a power-law tail p(lambda) ~ lambda^-alpha, with alpha roughly 2..4 for well-trained layers and larger
(closer to random, Marchenko-Pastur-like) for layers that learnt little. Needing no data, it is cheap
enough to run every epoch and comparable across variants of different width.

Each unit's weight [out, in, k, k] is reshaped to W = [out, in*k*k] (the raw conv weight; batch norm
is not folded in, as in WeightWatcher). ESD: lambda = sigma^2 / max(out, in*k*k) over the non-zero
singular values sigma of W (the normalisation only rescales lambda; alpha and stable rank ignore it).
Alpha is fitted by maximum likelihood on the tail lambda >= lambda_min (Clauset, Shalizi & Newman 2009):
alpha = 1 + n / sum(log(lambda_i / lambda_min)), with lambda_min chosen to minimise the Kolmogorov-Smirnov
distance between the tail and the fitted law. Matrices with fewer than `min_eigenvalues` non-zero
eigenvalues get no alpha (too few points for a tail), and `info["skipped"]` says so.

Layers are the named units: a name whose module has no single weight (an Inception block such as
`mixed3a`) stands for its branch units (`mixed3a_1x1`, ...); any Conv2d/Linear is used directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.facts.keys import STABLE_RANK
from harness.models import hook_points
from harness.models.names import resolve
from harness.probes.base import Probe, ProbeContext, ProbeResult


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted tail p(x) ~ x^-alpha for x >= xmin: `tail` points, KS distance `ks`."""

    alpha: float
    xmin: float
    ks: float
    tail: int


def fit_power_law(values: torch.Tensor, min_tail: int = 8) -> PowerLawFit:
    """Clauset et al.'s continuous power-law fit: MLE alpha for each candidate xmin, keep the min-KS one.

    Every sample with at least `min_tail` samples at or above it is a candidate xmin; vectorised over
    candidates (an m x m matrix, fine for the <= few thousand eigenvalues of a layer).
    Usage: ``fit_power_law(torch.linalg.svdvals(w) ** 2).alpha``
    """
    logs = torch.sort(values.double()[values > 0]).values.log()
    m = len(logs)
    if m < max(min_tail, 2):
        raise ValueError(f"need at least {max(min_tail, 2)} positive values for a power-law fit, got {m}")
    candidates = torch.arange(m - max(min_tail, 2) + 1)
    n = (m - candidates).double()  # tail sizes
    suffix = torch.flip(torch.cumsum(torch.flip(logs, [0]), 0), [0])  # sum_{j >= i} log x_j
    spread = suffix[candidates] - n * logs[candidates]  # sum over the tail of log(x_j / xmin)
    alpha = 1 + n / spread.clamp(min=1e-300)
    # KS distance between each candidate's tail and its fitted CDF P(x) = 1 - (x / xmin)^(1 - alpha).
    j = torch.arange(m)
    rank = (j[None, :] - candidates[:, None]).double()  # 0-based position within the tail
    in_tail = rank >= 0
    fitted = 1 - torch.exp(-(alpha[:, None] - 1) * (logs[None, :] - logs[candidates][:, None]))
    gap = torch.maximum((rank + 1) / n[:, None] - fitted, fitted - rank / n[:, None])
    ks = torch.where(in_tail, gap, torch.zeros_like(gap)).amax(dim=1)
    ks = torch.where(spread > 0, ks, torch.full_like(ks, float("inf")))  # all-equal tails cannot be fitted
    best = int(torch.argmin(ks))
    return PowerLawFit(float(alpha[best]), float(logs[best].exp()), float(ks[best]), int(n[best]))


def unit_weights(model: nn.Module, layers: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Layer name -> its weight; names without one (Inception blocks) are replaced by their named sub-units.

    Returns (weights, expanded) where `expanded` maps each replaced name to the units standing for it.
    """
    points = hook_points(model)
    modules = resolve(model, layers)  # unknown names -> ConfigError listing the valid ones

    def own_weight(module: nn.Module) -> torch.Tensor | None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return module.weight
        conv = getattr(module, "conv", None)
        return conv.weight if isinstance(conv, (nn.Conv2d, nn.Linear)) else None

    weights: dict[str, torch.Tensor] = {}
    expanded: dict[str, list[str]] = {}
    for name, module in modules.items():
        weight = own_weight(module)
        if weight is not None:
            weights[name] = weight
            continue
        inside = {id(m) for m in module.modules()}
        units = [p for p, m in points.items() if p != name and id(m) in inside and own_weight(m) is not None]
        expanded[name] = units
        weights.update({unit: own_weight(points[unit]) for unit in units})
    return weights, expanded


def _singular_values(w: torch.Tensor) -> torch.Tensor:
    """Singular values, descending, from the eigenvalues of the smaller Gram matrix (float64).

    Why not ``svdvals``: for a ResNet's 512 x 4608 conv it took 20 s on a busy 2-core CPU against ~1 s for
    the 512 x 512 Gram's ``eigvalsh``; in float64 the squared condition number costs nothing the ESD fit reads.
    """
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().flip(0)


class Spectra(Probe):
    """Stable rank, spectral norm and ESD power-law alpha of every named conv unit; needs no data.

    Usage: ``Spectra(layers=["mixed3b"]).run(ctx).scalars["mixed3b_3x3/alpha"]``
    """

    name = "spectra"
    cheap = True

    def __init__(self, layers: Sequence[str] | None = None, min_eigenvalues: int = 16, min_tail: int = 8) -> None:
        super().__init__(layers)
        if int(min_tail) < 2 or int(min_eigenvalues) < int(min_tail):
            raise ConfigError(f"spectra needs 2 <= min_tail <= min_eigenvalues, got {min_tail}, {min_eigenvalues}")
        self.min_eigenvalues, self.min_tail = int(min_eigenvalues), int(min_tail)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        weights, expanded = unit_weights(ctx.model, self.target_layers(ctx))
        result = ProbeResult(info={"expanded": expanded} if expanded else {})
        rows, skipped = [], {}
        for name, weight in weights.items():
            with torch.no_grad():
                w = weight.detach().to("cpu", torch.float64).reshape(len(weight), -1)  # [out, in*k*k]
                sigma = _singular_values(w)
            top = float(sigma[0]) if len(sigma) else 0.0
            stable_rank = float((sigma**2).sum()) / top**2 if top > 0 else 0.0
            tol = top * max(w.shape) * torch.finfo(weight.dtype).eps if weight.dtype.is_floating_point else 0.0
            eigenvalues = sigma[sigma > tol] ** 2 / max(w.shape)
            result.scalars[f"{name}/{STABLE_RANK}"] = stable_rank
            result.scalars[f"{name}/spectral_norm"] = top
            row = {"layer": name, "rows": w.shape[0], "cols": w.shape[1], "eigenvalues": len(eigenvalues)}
            row.update(stable_rank=stable_rank, spectral_norm=top, alpha=None, xmin=None, ks=None, tail=None)
            if len(eigenvalues) < self.min_eigenvalues:
                skipped[name] = f"{len(eigenvalues)} non-zero eigenvalues < min_eigenvalues={self.min_eigenvalues}"
            else:
                fit = fit_power_law(eigenvalues, self.min_tail)
                result.scalars[f"{name}/alpha"] = fit.alpha
                row.update(alpha=fit.alpha, xmin=fit.xmin, ks=fit.ks, tail=fit.tail)
            rows.append(row)
        result.tables["layers"] = rows
        if skipped:
            result.info["skipped"] = skipped
        return result
