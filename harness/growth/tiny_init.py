"""``model.widen_init=tiny`` (Verbockhaven et al. 2024, "Growing tiny networks"): fan-in and fan-out from the part of
the desired update that the existing weights cannot express, amplitude by a line search.

The paper's equations, per target (consumers c, their pre-activations z_c, inputs a_c; the producer's fan-in
inputs X, its patches for a conv):

1. desired update ``V_c = -dL/dz_c`` (per image and position);
2. the best update of each consumer's existing weights ``dW_c* = argmin E|V_c - dW a_c|^2`` (a ridge solve on
   the unfolded inputs) and the projected desired update ``V_c^proj = V_c - dW_c* a_c``: what the existing units
   cannot express;
3. new units ``sum_k omega_k sigma(alpha_k^T X)``, linearised at 0 (slope 1), fit ``V^proj``: with
   ``S = E[X X^T]`` and ``N = E[X V^proj^T]`` (the GradMax B with -V^proj for the gradient,
   :func:`harness.probes.gradmax.gradmax_rows`), the SVD ``S^-1/2 N = sum_k lambda_k u_k v_k^T`` gives
   ``alpha_k = S^-1/2 u_k`` and ``omega_k = v_k``, weighted by sqrt(lambda_k / lambda_1);
4. amplitude: the fan-out is set to the existing units' mean fan-out norm (times the weight), the fan-in to
   ``gamma`` times their mean fan-in norm; ``gamma`` and a global sign (ReLU passes only the positive part, and
   one of +-(alpha, omega) keeps at least half of the linear gain) are chosen by the smallest mean loss on the
   fixed batches, ``gamma = 0`` included, so the step-0 loss change is <= 0 by construction. Each sign's scan
   of amplitudes stops once ``PATIENCE`` amplitudes in a row do no better than its best so far.

Where our version differs from the paper: the existing weights are not moved by ``dW*`` (the optimizer does
that from the next step); consumer biases are not in the projection; for a consumer conv of kernel > 1, S is the
producer's patch covariance averaged over positions (the paper's exact form for 1x1 convs and linears); a
consumer whose unfolded input exceeds ``MAX_PROJECT`` columns is not projected (recorded). When ``gamma = 0``
wins, the units keep the TINY fan-out with zero fan-in and ``ALIVE_BIAS`` (function-preserving, as GradMax).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.growth.new_units import ALIVE_BIAS, Batch, NewUnits, mean_loss, passes, resumed
from harness.models.consumers import Wiring
from harness.probes.gradmax import _patch_maps, gradmax_rows

MAX_PROJECT = 4096  # consumers with more unfolded input columns than this are not projected (a 4096^2 solve)
GAMMAS = (0.0, *(2.0**-j for j in range(12, -6, -1)))  # fan-in amplitude / the existing mean fan-in norm: 2^-12 .. 2^5
RIDGE = 1e-4  # relative ridge on Gram matrices: x trace / dim
# A sign's scan of GAMMAS stops after this many amplitudes in a row no better than its best. Why: each amplitude is
# a pass over the fixed batches, and the line search was 90% of tier 0's time (harness-oracle); the loss against
# the amplitude falls to one minimum and then rises, so the tail of a 2^-12 .. 2^5 grid adds nothing.
PATIENCE = 2


def _unfold(a: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """A consumer's input as rows of what each output position reads: [positions, in * k^2] (or [.., in])."""
    if isinstance(m, nn.Conv2d):
        cols = F.unfold(a.float(), m.kernel_size, m.dilation, m.padding, m.stride)  # [n, in*k^2, L]
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return a.float().reshape(-1, a.shape[-1])


def _rows(v: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """A consumer's output (or its gradient) as rows per position: [positions, out]."""
    return v.float().flatten(2).transpose(1, 2).reshape(-1, v.shape[1]) if isinstance(m, nn.Conv2d) else \
        v.float().reshape(-1, v.shape[-1])  # fmt: skip


def _ridge_inverse(gram: torch.Tensor) -> torch.Tensor:
    lam = RIDGE * float(gram.diagonal().mean().clamp(min=1e-12))
    return torch.linalg.inv(gram + lam * torch.eye(len(gram), dtype=gram.dtype))


def _projections(net: nn.Module, batches: Sequence[Batch], wired: Sequence[Wiring]) -> dict[int, torch.Tensor]:
    """dW_c* per consumer (id -> [out, in * k^2]); consumers too wide to project are left out."""
    cross: dict[int, torch.Tensor] = {}
    gram: dict[int, torch.Tensor] = {}
    consumers = {id(c.module): c.module for w in wired for c in w.consumers}
    wide = {k for k, m in consumers.items() if m.weight[0].numel() > MAX_PROJECT}
    for p in passes(net, batches, wired):
        for k, m in consumers.items():
            if k in wide:
                continue
            a, v = _unfold(p.inputs[k], m).double(), -_rows(p.grads[k], m).double()
            cross[k] = cross.get(k, 0) + v.T @ a
            gram[k] = gram.get(k, 0) + a.T @ a
    return {k: cross[k] @ _ridge_inverse(gram[k]) for k in cross}


def _projected(grad: torch.Tensor, a: torch.Tensor, m: nn.Module, dw: torch.Tensor | None) -> torch.Tensor:
    """-V^proj = grad + dW* a, in the consumer output's shape (the 'gradient' B is computed from)."""
    if dw is None:
        return grad
    if isinstance(m, nn.Conv2d):
        w = dw.float().reshape(m.weight.shape)
        return grad + F.conv2d(a.float(), w, None, m.stride, m.padding, m.dilation)
    return grad + a.float() @ dw.float().T


def tiny_spectra(
    net: nn.Module, batches: Sequence[Batch], wired: Sequence[Wiring], k: Mapping[str, int] | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per target (alpha [k, fan-in], omega [k, fan-out], lambda [k]): steps 2-3 of the module docstring, the top
    ``k[target]`` directions (all of them without ``k``). Shared by :func:`tiny_directions` (a widened network,
    its new units silenced) and the oracle's ``tiny`` signal (a base network: the same statistics, no new units).

    lambda_i^2 is the first-order loss decrease of direction i at unit amplitude (fan-in sqrt(lambda_i) alpha_i,
    fan-out sqrt(lambda_i) omega_i): sum_i omega_i^T N^T alpha_i lambda_i = lambda_i^2."""
    dws = _projections(net, batches, wired)
    n_sum: dict[str, torch.Tensor] = {}
    s_sum: dict[str, torch.Tensor] = {}
    for p in passes(net, batches, wired):
        for w in wired:
            grads = [_projected(p.grads[id(c.module)], p.inputs[id(c.module)], c.module, dws.get(id(c.module)))
                     for c in w.consumers]  # fmt: skip
            h = p.inputs[id(w.producer)]
            part = -gradmax_rows(w, h, grads).double().cpu()  # E[V^proj x X]: [fan-out, fan-in]
            x = _patch_maps(h, w.producer).flatten(2) if isinstance(w.producer, nn.Conv2d) else h.float()
            x = x.transpose(1, 2).reshape(-1, x.shape[1]) if x.dim() == 3 else x.reshape(-1, x.shape[-1])
            x = x.double().cpu()
            s_sum[w.target] = s_sum.get(w.target, 0) + x.T @ x / len(x) * len(h)
            n_sum[w.target] = part if w.target not in n_sum else n_sum[w.target] + part
    out = {}
    for w in wired:
        s, n = s_sum[w.target], n_sum[w.target].T  # [fan-in, fan-in], [fan-in, fan-out]
        evals, evecs = torch.linalg.eigh(s + RIDGE * float(s.diagonal().mean().clamp(min=1e-12)) * torch.eye(len(s),
                                         dtype=s.dtype))  # fmt: skip
        s_half_inv = evecs @ torch.diag(evals.clamp(min=1e-12).rsqrt()) @ evecs.T
        u, lam, vh = torch.linalg.svd(s_half_inv @ n, full_matrices=False)
        top = len(lam) if k is None else k[w.target]
        out[w.target] = ((s_half_inv @ u[:, :top]).T, vh[:top], lam[:top])
    return out


def tiny_directions(
    net: nn.Module, batches: Sequence[Batch], found: Sequence[NewUnits]
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per target (alpha [k, fan-in], omega [k, fan-out], lambda [k]): TINY's new units before the amplitude.

    The new units are silenced first (zero fan-in and bias), so the projection sees the existing units only."""
    for f in found:
        for unit in f.units:
            f.set_fan_in(unit, torch.zeros_like(f.fan_in(unit)))
            f.set_bias(unit, 0.0)
    return tiny_spectra(net, batches, [f.wiring for f in found], {f.target: len(f.units) for f in found})


def _write(found: Sequence[NewUnits], dirs, scales, gamma: float, sign: float) -> None:
    for f in found:
        alpha, omega, lam = dirs[f.target]
        fan_in, fan_out = scales[f.target]
        for i, unit in enumerate(f.units):
            weight = float((lam[i] / lam[0]).sqrt()) if i < len(lam) and float(lam[0]) > 0 else 0.0
            a = alpha[i] / alpha[i].norm().clamp(min=1e-30) if i < len(alpha) else torch.zeros(alpha.shape[1])
            o = omega[i] if i < len(omega) else torch.zeros(omega.shape[1])
            f.set_fan_in(unit, (sign * gamma * fan_in * weight**0.5 * a).float())
            f.set_fan_out(unit, (sign * fan_out * weight**0.5 * o).float())
            f.set_bias(unit, 0.0 if gamma > 0 else ALIVE_BIAS)


def tiny_init(net: nn.Module, batches: Sequence[Batch], found: Sequence[NewUnits],
              amplitude_batches: Sequence[Batch] | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Write TINY's new units into ``net`` in place (one line search over every target together); the record
    per target: lambdas, the chosen gamma and sign, and the step-0 loss change on the line search's batches (<= 0).

    ``amplitude_batches``: run the line search on these instead of ``batches`` (the directions' batches). Why: on a
    converged base the directions fit the fixed batches' own residual gradients, and a line search on the same
    batches rewards that fit with a large step that raises the loss on any other image (tier 0 measured it:
    docs/results/2026-12-06-loop-ceiling.md). On held-out batches a direction that does not generalise gets
    gamma = 0 and changes nothing."""
    targets = [f.target for f in found]
    run, ready = resumed(net, batches, targets)  # every pass below starts at the first target
    dirs = tiny_directions(run, ready, found)
    net, batches = (run, ready) if amplitude_batches is None else resumed(net, amplitude_batches, targets)
    scales = {f.target: (f.mean_old("in"), f.mean_old("out")) for f in found}
    before = mean_loss(net, batches)
    best = (before, 0.0, 1.0)
    for sign in (1.0, -1.0):
        own, worse = before, 0  # this sign's best loss so far; gammas in a row that did worse than it
        for gamma in GAMMAS[1:]:
            _write(found, dirs, scales, gamma, sign)
            loss = mean_loss(net, batches)
            if loss < best[0]:
                best = (loss, gamma, sign)
            worse = worse + 1 if loss >= own else 0
            own = min(own, loss)
            if worse >= PATIENCE:  # past the minimum of a unimodal loss-vs-amplitude curve: the rest only rises
                break
    loss, gamma, sign = best
    _write(found, dirs, scales, gamma, sign)
    after = mean_loss(net, batches) if gamma == 0 else loss  # deterministic: the same weights give the same loss
    return {f.target: {"init": "tiny", "units": len(f.units), "lambda": [float(x) for x in dirs[f.target][2]],
                       "gamma": gamma, "sign": sign, "loss_before": before, "loss_after": after,
                       "loss_change": after - before, "fan_in_norm": gamma * scales[f.target][0],
                       "amplitude_on": "same" if amplitude_batches is None else "held_out",
                       "fan_out_norm": scales[f.target][1]} for f in found}  # fmt: skip
