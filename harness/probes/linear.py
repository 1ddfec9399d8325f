"""Linear read-out probes: what a layer makes linearly available about the image.

Per layer, spatially average-pooled activations (standardised with the training split's statistics)
are mapped by a linear read-out to three targets, and the held-out accuracy is reported:

- `class`: the image's class label.
- `curvature`: quantile bins of `attrs["curvature"]` (default 4). Bin edges are quantiles of all valid
  probe-set values (a label definition, fitted to no features); tied values (lines and corners are
  exactly 0) share a bin, so bins can be unequal and the chance level is reported, not assumed.
- `orientation`: `attrs["orientation"]` modulo `orientation_period` (default 180 deg) in equal bins (default
  4 of 45 deg). Why 180: lines and waves repeat every 180 deg, so 10 and 190 deg are the same image and no
  read-out could tell them apart; modulo 180 the label is a function of the image for every shape class
  (coarser for 360-periodic shapes). Set `orientation_period: 360, orientation_bins: 8` for the full angle.

Images whose attribute is NaN (texture) are left out of that target. Curvature and orientation partly
follow from the class (arcs vs lines), so compare them with the class read-out, not with chance alone.

The read-out is closed-form ridge regression to one-hot targets (deterministic, no optimiser to tune),
with the ridge strength chosen per layer and target from a grid by exact leave-one-out accuracy on the
training split (one SVD serves the whole grid). The split is seeded by `ctx.seed`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from harness.facts.errors import ConfigError
from harness.facts.keys import linear_acc
from harness.probes.base import Probe, ProbeContext, ProbeResult

log = logging.getLogger(__name__)


def pooled(acts: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] (or [N, C, ...]) -> [N, C] by averaging over every spatial position."""
    return acts.flatten(2).mean(dim=2) if acts.ndim > 2 else acts


def ridge_readout(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, classes: int, ridge: Sequence[float]
) -> tuple[torch.Tensor, float]:
    """Fit ridge regression to one-hot labels; return (test predictions, chosen relative ridge strength).

    Features are standardised with the training statistics (constant features stay 0). The penalty is
    `r * n_train` for each `r` in `ridge`; the one with the best leave-one-out accuracy wins (ties go to the
    stronger penalty). LOO is exact for ridge with an unpenalised intercept: the hat matrix
    H = 11^T/n + U diag(s^2 / (s^2 + lam)) U^T gives yhat_-i = (yhat_i - h_ii y_i) / (1 - h_ii).
    """
    x_train, x_test = x_train.double(), x_test.double()
    mean, std = x_train.mean(dim=0), x_train.std(dim=0, correction=0)
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    xs, xt = (x_train - mean) / std, (x_test - mean) / std
    n = len(xs)
    onehot = torch.nn.functional.one_hot(y_train, classes).double()
    y_mean = onehot.mean(dim=0)
    u, s, vt = torch.linalg.svd(xs, full_matrices=False)
    uty = u.T @ (onehot - y_mean)
    best = (-1.0, 0.0, None)
    for r in sorted(ridge, reverse=True):
        shrink = s**2 / (s**2 + r * n)
        fitted = u @ (shrink[:, None] * uty) + y_mean
        h = (1.0 / n + (u**2) @ shrink).clamp(max=1 - 1e-9)[:, None]
        loo = (fitted - h * onehot) / (1 - h)
        acc = float((loo.argmax(dim=1) == y_train).double().mean())
        if acc > best[0]:
            coef = vt.T @ ((s / (s**2 + r * n))[:, None] * uty)
            best = (acc, float(r), coef)
    predictions = (xt @ best[2] + y_mean).argmax(dim=1)
    return predictions, best[1]


class Linear(Probe):
    """Held-out accuracy of linear read-outs of class, curvature bin and orientation bin, per layer.

    Usage: ``Linear(layers=["mixed3b"]).run(ctx).scalars["mixed3b/class_acc"]``
    """

    name = "linear"
    cheap = True

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        train_fraction: float = 0.7,
        curvature_bins: int = 4,
        orientation_bins: int = 4,
        orientation_period: float = 180.0,
        ridge: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    ) -> None:
        super().__init__(layers)
        if not 0 < train_fraction < 1:
            raise ConfigError(f"linear.train_fraction must be in (0, 1), got {train_fraction!r}")
        if int(curvature_bins) < 2 or int(orientation_bins) < 2:
            raise ConfigError("linear.curvature_bins and linear.orientation_bins must be integers >= 2")
        if not 0 < orientation_period <= 360:
            raise ConfigError(f"linear.orientation_period must be in (0, 360] degrees, got {orientation_period!r}")
        if not ridge or any(not r > 0 for r in ridge):
            raise ConfigError(f"linear.ridge must be a non-empty list of positive numbers, got {ridge!r}")
        self.train_fraction = float(train_fraction)
        self.curvature_bins, self.orientation_bins = int(curvature_bins), int(orientation_bins)
        self.orientation_period, self.ridge = float(orientation_period), [float(r) for r in ridge]

    def targets(self, ctx: ProbeContext) -> tuple[dict[str, torch.Tensor], dict[str, str], dict]:
        """Target name -> labels [N] (-1 = excluded), the targets skipped with why, and the bin definitions."""
        probe_set = ctx.probe_set
        targets = {"class": probe_set.labels.long().clone()}
        skipped, bins = {}, {}
        curvature = probe_set.attrs.get("curvature")
        if curvature is None or not bool((~torch.isnan(curvature.double())).any()):
            skipped["curvature"] = "no curvature attribute in the probe set"
        else:
            curvature = curvature.double()
            valid = ~torch.isnan(curvature)
            levels = torch.arange(1, self.curvature_bins, dtype=torch.float64) / self.curvature_bins
            edges = torch.unique(torch.quantile(curvature[valid], levels))
            labels = torch.bucketize(curvature, edges, right=False)  # (edge_{i-1}, edge_i]: ties share a bin
            targets["curvature"] = torch.where(valid, labels, torch.full_like(labels, -1))
            bins["curvature_edges"] = [round(float(e), 6) for e in edges]
        orientation = probe_set.attrs.get("orientation")
        if orientation is None or not bool((~torch.isnan(orientation.double())).any()):
            skipped["orientation"] = "no orientation attribute in the probe set"
        else:
            orientation = orientation.double()
            valid = ~torch.isnan(orientation)
            width = self.orientation_period / self.orientation_bins
            labels = (torch.remainder(orientation.nan_to_num(0.0), self.orientation_period) / width).floor().long()
            labels = labels.clamp(max=self.orientation_bins - 1)
            targets["orientation"] = torch.where(valid, labels, torch.full_like(labels, -1))
            bins["orientation_bin_degrees"] = width
        return targets, skipped, bins

    def run(self, ctx: ProbeContext) -> ProbeResult:
        layers = self.target_layers(ctx)
        targets, skipped, bins = self.targets(ctx)
        if skipped:  # data without the world's attributes (ImageFolder, CIFAR-10): class read-out only
            log.warning("linear: %s skipped: %s", " and ".join(skipped), "; ".join(dict.fromkeys(skipped.values())))
        n = len(ctx.probe_set)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed))
        is_train = torch.zeros(n, dtype=torch.bool)
        is_train[order[: int(round(self.train_fraction * n))]] = True

        splits, chance, sizes = {}, {}, {}
        for target, labels in targets.items():
            train, test = is_train & (labels >= 0), ~is_train & (labels >= 0)
            if len(torch.unique(labels[train])) < 2 or not bool(test.any()):
                skipped[target] = "fewer than 2 classes in the training split or no held-out images"
                continue
            splits[target] = (train, test)
            chance[target] = float(torch.bincount(labels[test]).max()) / int(test.sum())  # best constant guess
            sizes[target] = {"train": int(train.sum()), "test": int(test.sum())}

        result = ProbeResult(info={"chance": chance, "sizes": sizes, "ridge": {}, **bins})
        result.info["orientation_period"] = self.orientation_period
        if skipped:
            result.info["skipped"] = skipped
        features = {name: pooled(acts) for name, acts in ctx.activations(layers).items()}
        for name, x in features.items():
            for target, (train, test) in splits.items():
                labels = targets[target]
                classes = int(labels.max()) + 1
                pred, ridge = ridge_readout(x[train], labels[train], x[test], classes, self.ridge)
                acc = float((pred == labels[test]).double().mean())
                result.scalars[f"{name}/{linear_acc(target)}"] = acc if math.isfinite(acc) else 0.0
                result.info["ridge"][f"{name}/{target}"] = ridge
        return result
