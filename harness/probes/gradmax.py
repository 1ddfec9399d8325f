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

Any other model (ResNet, VGG, MobileNet, a user's module): the targets, consumers and paths come from the
traced graph (:func:`harness.models.consumers.wirings`): the path starts at the target's raw output, so its
batch norm (identity, as above) and activation (its slope just above 0: 1 for ReLU, 0.5 for GELU/SiLU) are
on it; a flatten makes the linear reader see each unit at H*W columns (rows ordered (out, position)); a
linear target (ConvNeXt's channels-last MLP) has its input itself as fan-in. A target whose path holds a step
that is not linear in the new unit (a squeeze-excitation gate, a depthwise conv giving it fresh filters) is
skipped, its reason in ``info["skipped_targets"]``; the other targets are scored.

`score_per_param` divides by the k units' parameters (fan-in + fan-out weights + bias), for comparing
targets of different cost. `budget` (parameters) sets k per target to the units that budget buys.

Why hand-written: no library computes this for an arbitrary conv graph. gromo 0.1.0 (PyPI; TINY,
Verbockhaven et al. 2024, and GradMax-style growth) needs the network built from its own GrowingModule
layers linked as previous/next modules; using it would mean rewriting InceptionV1 (ConvReLU units, branch
concatenation, pools), so it is not used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.facts.errors import ConfigError
from harness.facts.keys import GRADMAX, SCORE, SCORE_PER_PARAM
from harness.models.consumers import Op, SamePad, Wiring, wirings
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.gradients import loss_gradients


def _same_mean_pool(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    from harness.models.inception_v1 import pad_same

    def pool(x: torch.Tensor) -> torch.Tensor:  # mean over the valid (unpadded) entries of each window
        ones = torch.ones_like(x[:, :1])
        total = F.avg_pool2d(pad_same(x, module.kernel, module.stride), module.kernel, module.stride)
        count = F.avg_pool2d(pad_same(ones, module.kernel, module.stride), module.kernel, module.stride)
        return total / count

    return pool


def _slope(fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """An activation's slope just above 0, where a new unit sits (ReLU: 1, as GradMax takes it; GELU, SiLU: 0.5)."""
    y = fn(torch.tensor([0.0, 1e-6], dtype=torch.float64))
    return float(y[1] - y[0]) / 1e-6


def _scale(s: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x * s


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                nn.Tanh, nn.Mish)  # fmt: skip
_IDENTITY = (nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d)
_PASS = {"StochasticDepth", "DropPath", "DropBlock2d"}  # regularisers: the identity in eval mode


def linear_surrogate(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear stand-in for a module on a consumer path (max pool -> average pool over the same windows; an
    activation -> its slope at 0+; batch norm, dropout -> identity)."""
    from harness.models.inception_v1 import SameMaxPool2d

    if isinstance(module, SameMaxPool2d):
        return _same_mean_pool(module)
    if isinstance(module, nn.MaxPool2d):
        k, s, p = module.kernel_size, module.stride, module.padding
        return lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=module.ceil_mode, count_include_pad=False)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return lambda x: F.adaptive_avg_pool2d(x, module.output_size)
    if isinstance(module, _IDENTITY):
        return lambda x: x  # a new unit's batch norm (mean 0, variance 1, weight 1, bias 0): 1 / sqrt(1 + eps)
    if type(module).__name__ in _PASS:
        return lambda x: x
    if isinstance(module, _ACTIVATIONS):
        return _scale(_slope(module))
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, SamePad)):
        return module
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        raise ConfigError(f"gradmax cannot linearise a Conv2d with groups={module.groups} on the path (depthwise: "
                          f"the new unit gets fresh filters there)")  # fmt: skip
    raise ConfigError(f"gradmax cannot linearise a {type(module).__name__} between a layer and its consumers; "
                      f"known: pools, activations, batch norm, local response norm, dropout, identity")  # fmt: skip


_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
_ACTIVATION_NAMES = {"relu", "relu_", "relu6", "leaky_relu", "gelu", "silu", "hardswish", "hardsigmoid", "sigmoid",
                     "tanh"}  # fmt: skip
_SAME = {"dropout", "contiguous", "clone", "float", "to", "type_as", "cat", "batch_norm"}


def _op(step: Op, u: torch.Tensor, axis: int) -> tuple[torch.Tensor, int]:
    """A graph function on the path, applied to the fan-in maps `u` whose fan-in axis is `axis` (the channel's)."""
    name, args, kw = step.name, step.args, step.kwargs
    if step.operand is not None:  # a binary op: only a product with another activation is not linear in the unit
        if step.operand == "tensor" and "mul" in name:
            raise ConfigError("gradmax cannot linearise a product with another activation (a gate) on the path")
        return (u * step.value if step.operand == "scalar" and "mul" in name else u), axis
    if name in _SAME:
        return u, axis
    if name in ("max_pool2d", "adaptive_max_pool2d"):
        if name == "adaptive_max_pool2d":
            return F.adaptive_avg_pool2d(u, args[0] if args else kw["output_size"]), axis
        p = {**dict(zip(_POOL_ARGS, args)), **kw}
        if p.get("dilation", 1) not in (1, (1, 1)):
            raise ConfigError("gradmax cannot linearise a dilated max pool")
        k = p["kernel_size"]
        return F.avg_pool2d(u, k, p.get("stride") or k, p.get("padding", 0), p.get("ceil_mode", False), False), axis
    if name in ("avg_pool2d", "adaptive_avg_pool2d"):
        return step.fn(u, *args, **kw), axis
    if name == "permute":
        dims = [d % u.dim() for d in (args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args)]
        return u.permute(dims), dims.index(axis)
    if name in ("mean", "sum"):
        dims = args[0] if args else kw.get("dim")
        dims = [d % u.dim() for d in ([dims] if isinstance(dims, int) else dims)]
        keep = kw.get("keepdim", args[1] if len(args) > 1 else False)
        return getattr(torch, name)(u, dims, keepdim=keep), axis if keep else axis - sum(d < axis for d in dims)
    if name in _ACTIVATION_NAMES:  # a function (F.gelu) or a method (x.relu_())
        fn = step.fn if callable(step.fn) else getattr(torch, name.rstrip("_"))
        return u * _slope(fn), axis
    raise ConfigError(f"gradmax cannot linearise {name} between a layer and its consumers")


def follow(u: torch.Tensor, axis: int, path: Sequence[nn.Module | Op]) -> tuple[torch.Tensor, int, bool]:
    """The fan-in maps `u` carried along a consumer path: (maps, their fan-in axis, flattened?). A flatten
    ([n, C, H, W] -> [n, C*H*W], the only one the widen walk allows) leaves [n, fan-in, H*W]: each unit is
    read H*W times."""
    flat = False
    for step in path:
        if isinstance(step, nn.Flatten) or isinstance(step, Op) and step.name in ("flatten", "view", "reshape"):
            u, axis, flat = u.flatten(2), 1, True
        elif isinstance(step, Op):
            u, axis = _op(step, u, axis)
        else:
            u = linear_surrogate(step)(u)
    return u, axis, flat


def _patch_maps(h: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`unfold(h)` as maps [n, in * kp^2, H', W'] (channel order of `F.unfold`: in-channel, then kernel offset).

    Why a one-hot depthwise convolution instead of `F.unfold`: im2col ran up to ~300x slower than this on a
    loaded 2-core machine (its OpenMP loop contends), while convolutions take oneDNN's path.
    """
    c, (kh, kw) = h.shape[1], conv.kernel_size
    onehot = torch.eye(kh * kw, dtype=torch.float32, device=h.device).reshape(kh * kw, 1, kh, kw).repeat(c, 1, 1, 1)
    return F.conv2d(h.float(), onehot, None, conv.stride, conv.padding, conv.dilation, groups=c)


def b_shape(w: Wiring) -> tuple[int, int]:
    """(rows, columns) of B: fan-out weights (per consumer: out x kernel positions, or out x columns read per
    unit) and fan-in weights (in x kernel positions, or in features), without computing it."""
    p = w.producer
    width = p.out_channels if isinstance(p, nn.Conv2d) else p.out_features
    rows = 0
    for c in w.consumers:
        m = c.module
        columns = (c.channels.stop - c.channels.start) // width  # a linear after a flatten reads H*W per unit
        per_unit = math.prod(m.kernel_size) if isinstance(m, nn.Conv2d) else columns
        rows += (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features) * per_unit
    return rows, (p.in_channels * math.prod(p.kernel_size) if isinstance(p, nn.Conv2d) else p.in_features)


def top_singular_values(b: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest singular values of `b` (float64, descending): from the eigenvalues of the Gram matrix of its
    smaller side when that side is above 1024 (4x faster than an SVD of a 4608 x 4608 B, same top values)."""
    if min(b.shape) <= 1024:
        return torch.linalg.svdvals(b)[:k]
    gram = b.T @ b if b.shape[1] <= b.shape[0] else b @ b.T
    return torch.linalg.eigvalsh(gram).flip(0)[:k].clamp(min=0).sqrt()


def gradmax_rows(w: Wiring, h: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """This batch's contribution to B [fan-out weights, fan-in weights] (see the module docstring).

    `h` is the producer's input ([n, C, H, W] for a conv, [..., C] for a linear); `grads[i]` is
    dL/d(output of `w.consumers[i].module`).
    """
    producer = w.producer
    if isinstance(producer, nn.Conv2d) and producer.groups == 1:
        x, axis = _patch_maps(h, producer), 1  # each fan-in weight's input as a map: [n, in*kp^2, H', W']
    elif isinstance(producer, nn.Linear):
        x, axis = h.float(), h.dim() - 1  # fan-in weights read the last axis
    else:
        raise ConfigError(f"gradmax needs a plain Conv2d or a Linear producing {w.target}, got {producer}")
    n = len(h)
    blocks = []
    for consumer, g in zip(w.consumers, grads):
        u, at, flat = follow(x, axis, consumer.path)
        g = g.float()
        module = consumer.module
        if isinstance(module, nn.Linear) and flat:  # reads each unit at k flattened positions: rows (out, k)
            blocks.append(torch.einsum("no,njs->osj", g, u).reshape(-1, u.shape[1]))
        elif isinstance(module, nn.Linear) and at == u.dim() - 1:  # channels last (ConvNeXt), or [n, units]
            blocks.append(g.reshape(-1, g.shape[-1]).T @ u.reshape(-1, u.shape[-1]))
        elif isinstance(module, nn.Linear) and at == 1 and u[0, 0].numel() == 1:  # [n, units, 1, 1]: a pooled head
            blocks.append(g.T @ u.reshape(n, -1))  # [out, in*kp^2]
        elif isinstance(module, nn.Conv2d) and module.groups == 1 and at == 1 and u.dim() == 4:
            # sum_{n,q} g[n, o, q] unfold_c(u)[n, (j, d), q] is the weight gradient of a conv reading u
            size = (g.shape[1], u.shape[1], *module.kernel_size)
            rows = torch.nn.grad.conv2d_weight(u, size, g, module.stride, module.padding, module.dilation)
            blocks.append(rows.permute(0, 2, 3, 1).reshape(-1, u.shape[1]))  # [out * kc^2, in*kp^2]
        else:
            raise ConfigError(f"gradmax needs Conv2d (groups=1) or Linear consumers reading {w.target}'s units "
                              f"as channels, got {module}")  # fmt: skip
    return torch.cat(blocks)


class GradMax(Probe):
    """Per widen target: GradMax's score (sum of the top-k singular values of B) and the score per parameter.

    Usage: ``GradMax(k=4).run(ctx).scalars["mixed3b_5x5/score"]`` (a ResNet: ``["layer2.0.conv1/score"]``)
    """

    name = GRADMAX

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        k: int = 4,
        budget: int | None = None,
        max_images: int | None = 256,
        max_entries: int | None = 2**25,
    ) -> None:
        super().__init__(layers)
        if isinstance(k, bool) or int(k) < 1:
            raise ConfigError(f"gradmax.k must be an integer >= 1 (units added per target), got {k!r}")
        if budget is not None and int(budget) < 1:
            raise ConfigError(f"gradmax.budget must be null or a number of parameters >= 1, got {budget!r}")
        if max_images is not None and int(max_images) < 1:
            raise ConfigError(f"gradmax.max_images must be null (all) or >= 1, got {max_images!r}")
        if max_entries is not None and int(max_entries) < 1:
            raise ConfigError(f"gradmax.max_entries must be null (no limit) or >= 1, got {max_entries!r}")
        self.k, self.budget = int(k), None if budget is None else int(budget)
        self.max_images = None if max_images is None else int(max_images)
        self.max_entries = None if max_entries is None else int(max_entries)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        result = ProbeResult()
        skipped: dict[str, str] = {}  # target -> why it has no score (B too large, a path step that is not linear)
        wired = []
        for w in wirings(ctx.model, self.layers or None, image_size=int(ctx.probe_set.images.shape[-1])):
            rows, cols = b_shape(w)
            if self.max_entries is not None and rows * cols > self.max_entries:
                skipped[w.target] = f"B would be {rows} x {cols}, over gradmax.max_entries={self.max_entries}"
            else:
                wired.append(w)
        producers = list({id(w.producer): w.producer for w in wired}.values())
        consumers = list({id(c.module): c.module for w in wired for c in w.consumers}.values())
        sums: dict[str, torch.Tensor] = {}
        for batch in loss_gradients(ctx, consumers, producers, self.max_images) if wired else ():
            for w in wired:
                if w.target in skipped:
                    continue
                grads = [batch.grads[id(c.module)] for c in w.consumers]
                try:
                    part = gradmax_rows(w, batch.inputs[id(w.producer)], grads).double()
                except ConfigError as err:
                    skipped[w.target] = str(err)
                    sums.pop(w.target, None)
                    continue
                sums[w.target] = part if w.target not in sums else sums[w.target] + part
        if skipped:
            result.info["skipped_targets"] = skipped
        if not sums:
            result.info["skipped"] = f"no widen target could be scored ({len(skipped)} skipped: see skipped_targets)"
        rows = []
        for w in (w for w in wired if w.target in sums):
            b = sums[w.target].cpu()
            per_unit = b.shape[0] + b.shape[1] + (w.producer.bias is not None)
            k = self.k if self.budget is None else max(1, round(self.budget / per_unit))
            sigma = top_singular_values(b, k)
            score = float(sigma.sum())
            result.scalars[f"{w.target}/{SCORE}"] = score
            result.scalars[f"{w.target}/{SCORE_PER_PARAM}"] = score / (k * per_unit)
            rows.append({"target": w.target, "k": k, "params_per_unit": per_unit, "score": score,
                         "score_per_param": score / (k * per_unit), "sigma_1": float(sigma[0]),
                         "fan_out": b.shape[0], "fan_in": b.shape[1]})  # fmt: skip
        result.tables["targets"] = rows
        return result
