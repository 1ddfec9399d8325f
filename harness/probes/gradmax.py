"""GradMax (Evci et al. 2022) as a "where to grow" score: how fast the loss could fall if k units were added here.

GradMax adds units function-preservingly (zero fan-in, so they output nothing) and picks their fan-out
to make the fan-in's gradient as large as possible. That largest gradient is a score per candidate layer:
the sum of the top-k singular values of B = E[g_next h_in^T]. For convolutions (derivation):

    a new unit of target T reads T's input h through T's conv P (kernel kp); its pre-activation is
    v = sum_j w_in[j] X_j with X = unfold_P(h) (j runs over P's patch: in-channel x kp x kp). With w_in = 0,
    v = 0 and the network is unchanged whatever the fan-out. Consumer c (a conv of kernel kc, or the
    linear head) reads the unit through a path A_c (pools, LRN; `harness.models.consumers`) with fan-out
    weights w_out[c, o, d] (out channel o, kernel offset d), adding conv(A_c v, w_out_c) to its
    pre-activation z_c. With g_c = dL/dz_c and the activation's slope at 0 taken as 1 (as in GradMax):

        dL/dw_in[j] = E_n sum_{c,o,d,q} g_c[n, o, q] w_out[c, o, d] unfold_c(A_c X_j)[n, d, q]
                    = sum_{(c,o,d)} w_out[(c,o,d)] B[(c,o,d), j]
        B[(c,o,d), j] = E_n sum_q g_c[n, o, q] unfold_c(A_c X)[n, (j, d), q]       (q: consumer positions)

    so B has one row per fan-out weight (sum_c out_c * kc^2; rows ordered like `weight[:, new].flatten()`
    of each consumer) and one column per fan-in weight (in * kp^2, ordered like `weight[new].flatten()`).
    A unit whose fan-out is a unit-norm left singular vector u_i of B gets a fan-in gradient of norm
    sigma_i; GradMax's k units take the top k. score = sum_{i <= k} sigma_i. For a linear consumer
    there is no offset d and q is its single (average-pooled) position; for a stride-1 1x1 chain this is
    the paper's E[g_{l+1} h_{l-1}^T] exactly. B never reads the consumers' existing weights.

Approximations (a zero unit has no argmax and no statistics): max pools on the path are replaced by
average pools over the same windows (the expected routing under a uniformly random argmax), local
response norm by the identity (its denominator (1 + 1e-4/9 sum x^2)^0.5 is ~1 for models trained here; with
Lucid's weights, whose inputs are x * 255 - 117, it rescales the two stem targets that pass through it,
conv2d0 and conv2d2, by an unmeasured factor of order 1), and the new unit's default batch norm by the
identity (exact up to 1/sqrt(1 + eps)). Targets whose consumers are reached without pools (bottlenecks,
conv2d1, last-block branches read by the head) are exact, and tested against autograd.

`score_per_param` divides by the k units' parameters (fan-in + fan-out weights + bias), for comparing
targets of different cost. `budget` (parameters) sets k per target to the units that budget buys.

Why hand-written: no library computes this for an arbitrary conv graph. gromo 0.1.0 (PyPI; TINY,
Verbockhaven et al. 2024, and GradMax-style growth) needs the network built from its own GrowingModule
layers linked as previous/next modules; using it would mean rewriting InceptionV1 (ConvReLU units, branch
concatenation, pools), so it is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.models.consumers import SamePad, Wiring, widen_candidates, wiring
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.gradients import loss_gradients
from harness.probes.keys import GRADMAX, SCORE, SCORE_PER_PARAM


def _same_mean_pool(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    from harness.models.inception_v1 import pad_same

    def pool(x: torch.Tensor) -> torch.Tensor:  # mean over the valid (unpadded) entries of each window
        ones = torch.ones_like(x[:, :1])
        total = F.avg_pool2d(pad_same(x, module.kernel, module.stride), module.kernel, module.stride)
        count = F.avg_pool2d(pad_same(ones, module.kernel, module.stride), module.kernel, module.stride)
        return total / count

    return pool


def linear_surrogate(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear stand-in for a module on a consumer path (max pool -> average pool over the same windows)."""
    from harness.models.inception_v1 import SameMaxPool2d

    if isinstance(module, SameMaxPool2d):
        return _same_mean_pool(module)
    if isinstance(module, nn.MaxPool2d):
        k, s, p = module.kernel_size, module.stride, module.padding
        return lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=module.ceil_mode, count_include_pad=False)
    if isinstance(module, (nn.LocalResponseNorm, nn.Dropout, nn.Identity)):
        return lambda x: x
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, SamePad)):
        return module
    raise ConfigError(f"gradmax cannot linearise a {type(module).__name__} between a layer and its consumers; "
                      f"known: max/average pools, local response norm, dropout, identity")  # fmt: skip


def _patch_maps(h: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`unfold(h)` as maps [n, in * kp^2, H', W'] (channel order of `F.unfold`: in-channel, then kernel offset).

    Why a one-hot depthwise convolution instead of `F.unfold`: im2col ran up to ~300x slower than this on a
    loaded 2-core machine (its OpenMP loop contends), while convolutions take oneDNN's path.
    """
    c, (kh, kw) = h.shape[1], conv.kernel_size
    onehot = torch.eye(kh * kw, dtype=torch.float32, device=h.device).reshape(kh * kw, 1, kh, kw).repeat(c, 1, 1, 1)
    return F.conv2d(h.float(), onehot, None, conv.stride, conv.padding, conv.dilation, groups=c)


def gradmax_rows(w: Wiring, h: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """This batch's contribution to B [fan-out weights, fan-in weights] (see the module docstring).

    `h` is the producer conv's input [n, C, H, W]; `grads[i]` is dL/d(output of `w.consumers[i].module`).
    """
    conv = w.producer
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ConfigError(f"gradmax needs a plain Conv2d producing {w.target}, got {conv}")
    n = len(h)
    x = _patch_maps(h, conv)  # each fan-in weight's input as a map: [n, in*kp^2, H', W']
    blocks = []
    for consumer, g in zip(w.consumers, grads):
        u = x
        for module in consumer.path:
            u = linear_surrogate(module)(u)
        g = g.float()
        module = consumer.module
        if isinstance(module, nn.Linear):
            blocks.append(g.T @ u.reshape(n, -1))  # [out, in*kp^2]
        elif isinstance(module, nn.Conv2d) and module.groups == 1:
            # sum_{n,q} g[n, o, q] unfold_c(u)[n, (j, d), q] is the weight gradient of a conv reading u
            size = (g.shape[1], u.shape[1], *module.kernel_size)
            rows = torch.nn.grad.conv2d_weight(u, size, g, module.stride, module.padding, module.dilation)
            blocks.append(rows.permute(0, 2, 3, 1).reshape(-1, u.shape[1]))  # [out * kc^2, in*kp^2]
        else:
            raise ConfigError(f"gradmax needs Conv2d (groups=1) or Linear consumers of {w.target}, got {module}")
    return torch.cat(blocks)


class GradMax(Probe):
    """Per widen target: GradMax's score (sum of the top-k singular values of B) and the score per parameter.

    Usage: ``GradMax(k=4).run(ctx).scalars["mixed3b_5x5/score"]``
    """

    name = GRADMAX

    def __init__(
        self, layers: Sequence[str] | None = None, k: int = 4, budget: int | None = None, max_images: int | None = 256
    ) -> None:
        super().__init__(layers)
        if isinstance(k, bool) or int(k) < 1:
            raise ConfigError(f"gradmax.k must be an integer >= 1 (units added per target), got {k!r}")
        if budget is not None and int(budget) < 1:
            raise ConfigError(f"gradmax.budget must be null or a number of parameters >= 1, got {budget!r}")
        if max_images is not None and int(max_images) < 1:
            raise ConfigError(f"gradmax.max_images must be null (all) or >= 1, got {max_images!r}")
        self.k, self.budget = int(k), None if budget is None else int(budget)
        self.max_images = None if max_images is None else int(max_images)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        targets = self.layers or widen_candidates(ctx.model)
        wirings = [wiring(ctx.model, t) for t in targets]
        producers = list({id(w.producer): w.producer for w in wirings}.values())
        consumers = list({id(c.module): c.module for w in wirings for c in w.consumers}.values())
        sums: dict[str, torch.Tensor] = {}
        for batch in loss_gradients(ctx, consumers, producers, self.max_images):
            for w in wirings:
                grads = [batch.grads[id(c.module)] for c in w.consumers]
                part = gradmax_rows(w, batch.inputs[id(w.producer)], grads).double()
                sums[w.target] = part if w.target not in sums else sums[w.target] + part
        result = ProbeResult()
        rows = []
        for w in wirings:
            b = sums[w.target].cpu()
            sigma = torch.linalg.svdvals(b)
            per_unit = b.shape[0] + b.shape[1] + (w.producer.bias is not None)
            k = self.k if self.budget is None else max(1, round(self.budget / per_unit))
            score = float(sigma[:k].sum())
            result.scalars[f"{w.target}/{SCORE}"] = score
            result.scalars[f"{w.target}/{SCORE_PER_PARAM}"] = score / (k * per_unit)
            rows.append({"target": w.target, "k": k, "params_per_unit": per_unit, "score": score,
                         "score_per_param": score / (k * per_unit), "sigma_1": float(sigma[0]),
                         "fan_out": b.shape[0], "fan_in": b.shape[1]})  # fmt: skip
        result.tables["targets"] = rows
        return result
