"""Linear CKA (Kornblith et al. 2019): how similar two layers' representations are, up to rotation and scale.

Per layer, CKA of the model against a reference model on the probe set (`ctx.reference`, by default the
run's initial weights: "how far has this layer moved from init"), and the layer x layer CKA matrix of the
model itself (which layers compute similar things), logged as a heatmap.

Features are each image's activation map flattened to one vector ([N, C*H*W]), not per-position vectors:
CKA then compares what the layer says about whole images, keeps spatial layout (which pooling would
discard), and needs only the N x N Gram matrix, so its cost does not grow with C*H*W beyond one pass.
Everything is computed in float64 on centred features, chunked over features so large layers fit in memory.

The reference's Gram matrices are cached on disk (`control_cache`, keyed by the reference's weights, the probe
images and the layers): the reference does not change, so every run that starts from the same initial weights,
and every harness-probe run with the same seed, skips its pass over the probe set.

Estimators: the biased HSIC of Kornblith et al. (default), or with `debiased=True` the unbiased HSIC of
Song et al. (2012), which Nguyen et al. (2021) recommend because biased CKA of unrelated features is
inflated when features outnumber samples. Debiased CKA can be slightly negative and needs >= 4 samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.facts.keys import CKA_TO_REFERENCE
from harness.models.names import layer_names
from harness.probes import control_cache
from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.heatmap import heatmap

_ZERO_VARIANCE = 1e-20  # centred sum of squares per feature (features scaled to max|x| = 1) below this = constant


def _scale(x: torch.Tensor) -> float:
    """max |x| (0.0 when empty) without the full-size copy `x.abs()` would make; ValueError on NaN or inf."""
    if not x.numel():
        return 0.0
    lo, hi = torch.aminmax(x)
    scale = float(torch.maximum(hi, -lo))
    if not math.isfinite(scale):
        raise ValueError("linear_cka: features contain NaN or inf")
    return scale


def gram(x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Linear Gram matrix [N, N] (float64) of centred, rescaled features; all zeros when x has no variance.

    `x` is [N, ...] (flattened per sample). Rescaling by max|x| cannot change CKA (scale invariant) but
    keeps tiny or huge inputs away from float64 under/overflow; centring the features (rather than the
    Gram matrix afterwards) avoids cancellation when activations have a large mean.

    Features that arrive in float32 (or less; every activation cache) are centred on float64 means and
    multiplied in float32, each chunk's Gram summed in float64: the rounding is that of the activations
    themselves, and it is ~1.8x faster (float32 GEMMs, no float64 copy): on two 512 x 301k post-ReLU feature
    sets, 7.0 -> 3.9 s (2 threads) and CKA moved by 5e-14. float64 features stay float64 throughout.
    """
    x = x.reshape(len(x), -1)
    n, d = x.shape
    scale = _scale(x)
    out = torch.zeros(n, n, dtype=torch.float64)
    if scale == 0.0:
        return out
    work = torch.float32 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float64
    for start in range(0, d, chunk):
        part = x[:, start : start + chunk].to(work, copy=True).div_(scale)  # never the caller's tensor
        part -= part.mean(dim=0, keepdim=True, dtype=torch.float64).to(work)
        out += part @ part.T  # products in `work` precision, summed over chunks in float64
    if float(out.diagonal().sum()) <= _ZERO_VARIANCE * n * d:  # trace = centred sum of squares
        out.zero_()
    return out


def centre_gram(k: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """Prepare a `gram()` matrix so that HSIC(K, L) is proportional to the plain dot product <K', L'>.

    Biased: `gram()` already centred the features, so K' = K (= H K H). Debiased: the U-statistic of Song
    et al. (2012) written as a centring (Kornblith et al.'s `center_gram(unbiased=True)`); the factor
    1 / (n (n - 3)) it omits cancels in CKA.
    """
    if not debiased:
        return k
    n = len(k)
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got {n}")
    k = k.clone()
    k.fill_diagonal_(0.0)
    means = k.sum(dim=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    k -= means[:, None]
    k -= means[None, :]
    k.fill_diagonal_(0.0)
    return k


def cka_from_grams(kx: torch.Tensor, ky: torch.Tensor, debiased: bool = False) -> float:
    """CKA from two `centre_gram()` matrices; 0.0 when either side has no variance (never NaN)."""
    if kx.shape != ky.shape:
        raise ValueError(f"linear_cka: sample counts differ ({len(kx)} vs {len(ky)})")
    return _ratio(float((kx * ky).sum()), float((kx * kx).sum()), float((ky * ky).sum()), debiased)


def _ratio(xy: float, xx: float, yy: float, debiased: bool) -> float:
    """CKA = HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y)); 0.0 when either side has no variance (never NaN)."""
    if not (xx > 0 and yy > 0):
        return 0.0
    value = xy / math.sqrt(xx * yy)  # sqrt(a * a) == a exactly, so identical inputs give exactly 1
    # Cauchy-Schwarz bounds the value to [-1, 1] ([0, 1] biased); clamping only removes rounding (1 + 1e-16).
    return min(1.0, max(-1.0 if debiased else 0.0, value))


def _centred(x: torch.Tensor) -> torch.Tensor | None:
    """`gram()`'s centred, rescaled float64 features [N, D] themselves; None when x has no variance."""
    x = x.reshape(len(x), -1)
    scale = _scale(x)
    if scale == 0.0:
        return None
    part = x.to(torch.float64, copy=True).div_(scale)
    part -= part.mean(dim=0, keepdim=True)
    return None if float(part.square().sum()) <= _ZERO_VARIANCE * part.numel() else part


def _feature_space_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Biased CKA from D x E cross-products instead of N x N Gram matrices (same value, to float64 rounding).

    For centred X, Y: <XX^T, YY^T> = ||X^T Y||^2, so HSIC needs N (D^2 + DE + E^2) multiply-adds here
    against N^2 (D + E) for the two Grams: cheaper when there are fewer features than samples.
    """
    xs, ys = _centred(x), _centred(y)
    if xs is None or ys is None:
        return 0.0
    xy, xx, yy = (float((a.T @ b).square().sum()) for a, b in ((xs, ys), (xs, xs), (ys, ys)))
    return _ratio(xy, xx, yy, debiased=False)


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA of features x [N, D] and y [N, E] (extra dims are flattened per sample).

    Usage: ``linear_cka(acts_a.flatten(1), acts_b.flatten(1))`` -> 1.0 for identical representations.
    """
    if len(x) != len(y):
        raise ValueError(f"linear_cka: sample counts differ ({len(x)} vs {len(y)})")
    d, e = x[0].numel() if len(x) else 0, y[0].numel() if len(y) else 0
    if not debiased and d * d + d * e + e * e < len(x) * (d + e):  # fewer features than samples
        return _feature_space_cka(x, y)
    return cka_from_grams(centre_gram(gram(x), debiased), centre_gram(gram(y), debiased), debiased)


class CKA(Probe):
    """Linear CKA of each layer to the reference model, plus the model's own layer x layer CKA matrix.

    Usage: ``CKA(layers=["conv2d0", "mixed3b"], debiased=False).run(ctx).scalars["mixed3b/cka_to_reference"]``
    """

    name = "cka"
    cheap = False  # float64 Gram matrices cost N^2 * C*H*W per layer (~4 s on one core for the tiny model)

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        debiased: bool = False,
        matrix: bool = True,
        chunk: int = 8192,
        cache_reference: bool = True,
    ) -> None:
        super().__init__(layers)
        self.debiased, self.matrix, self.chunk = bool(debiased), bool(matrix), int(chunk)
        self.cache_reference = bool(cache_reference)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        layers = self.target_layers(ctx)
        n = len(ctx.probe_set)
        if self.debiased and n < 4:
            raise ConfigError(f"cka.debiased=true needs a probe set of at least 4 images, got {n}")
        acts = ctx.activations(layers)
        grams = {name: centre_gram(gram(a, self.chunk), self.debiased) for name, a in acts.items()}
        result = ProbeResult(info={"debiased": self.debiased, "features": "per-image flattened C*H*W", "n": n})

        if ctx.reference is None:
            result.info["reference"] = "none: cka_to_reference skipped"
        else:
            known = layer_names(ctx.reference)
            common = [name for name in layers if name in known]
            skipped = {name: "not a layer of the reference model" for name in layers if name not in known}
            if skipped:
                result.info["skipped"] = skipped
            ref_grams, result.info["reference_grams"] = self._reference_grams(ctx, common)
            for name, ref_gram in ref_grams.items():
                value = cka_from_grams(grams[name], centre_gram(ref_gram, self.debiased), self.debiased)
                result.scalars[f"{name}/{CKA_TO_REFERENCE}"] = value

        if self.matrix and layers:
            values = torch.zeros(len(layers), len(layers), dtype=torch.float64)
            for i, a in enumerate(layers):
                for j in range(i + 1):  # the diagonal is 1, or 0 for a layer without variance
                    values[i, j] = values[j, i] = cka_from_grams(grams[a], grams[layers[j]], self.debiased)
            matrix = [[round(float(v), 6) for v in row] for row in values]
            result.info["layer_cka"] = {"layers": list(layers), "matrix": matrix}
            title = f"linear CKA{' (debiased)' if self.debiased else ''}, layer x layer"
            lo = min(0.0, float(values.min()))
            result.images["layer_cka"] = heatmap(values.numpy(), layers, layers, title=title, vmin=lo, vmax=1.0)
        return result

    def _reference_grams(self, ctx: ProbeContext, layers: list[str]) -> tuple[dict[str, torch.Tensor], str]:
        """({layer: the reference's `gram()`}, how it was obtained): from the disk cache when it has them."""
        if not layers:
            return {}, "no common layers"
        key = None
        if self.cache_reference:
            size = ctx.probe_set.images.shape[-2:]
            key = control_cache.cache_key(
                ctx.reference, probe=self.name, probe_set=ctx.probe_set.digest(), layers=layers, chunk=self.chunk,
                device=ctx.device.type, images_per_pass=ctx.images_per_pass(*size),
            )  # fmt: skip
            found = control_cache.load_tensors(self.name, key)
            if found is not None and set(found) == set(layers):
                return {name: found[name] for name in layers}, f"cached ({control_cache.cache_dir()}, key {key})"
        grams = {name: gram(a, self.chunk) for name, a in self._reference_activations(ctx, layers).items()}
        if ctx.reference is not ctx.model:
            ctx.forget(ctx.reference)  # only CKA reads the reference: free its activations (GBs at 224 px)
        if key is not None and (path := control_cache.save_tensors(self.name, key, grams)) is not None:
            return grams, f"computed; cached in {path}"
        return grams, "computed"

    @staticmethod
    def _reference_activations(ctx: ProbeContext, layers: list[str]) -> dict[str, torch.Tensor]:
        """The reference's activations, from the shared cache when it has all of the run's layers."""
        if not layers:
            return {}
        known = layer_names(ctx.reference)
        if all(name in known for name in ctx.layers):
            return ctx.activations(layers, model=ctx.reference)
        # ctx.activations would also capture the run's layers the reference lacks (e.g. an inserted block)
        own = ProbeContext(ctx.reference, layers, ctx.probe_set, device=ctx.device, batch_size=ctx.batch_size,
                           max_activation_bytes=ctx.max_activation_bytes)  # fmt: skip
        return own.activations(layers)
