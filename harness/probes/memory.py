"""The round's activation cache and `probing.max_activation_gb`: what fits, and one clear line when it does not.

Why: every probe that reads activations shares one float32 cache of every probe layer over the whole probe set
([N, C, H, W] per layer, `ProbeContext.activations`). At 64 px that is at most ~1 GB for the tested families, but
at 224 px the default layers of the full InceptionV1 take 5.4 GB and vgg11_bn's (every ReLU) 14 GB, its first
ReLU alone 6.1 GB: the operating system killed the process on a 24 GB machine, and the run's results with it.
So:

- default probe layers that would not fit are left out before the round, the largest per image first (the
  early, high-resolution ones), with one log line naming them and their sizes (`fit_layers`);
- a capture over the limit (layers the user named) fails the probe that asked, with one line saying what it
  needed and what to change (`ActivationMemoryError`), never the process. Other probes keep running.

The limit counts one model's capture: CKA's reference is captured after the model's and freed after use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.models.hooks import capture, eval_mode, forward_until
from harness.models.names import default_layers

log = logging.getLogger(__name__)

GB = 1024**3


class ActivationMemoryError(RuntimeError):
    """A capture that would exceed `probing.max_activation_gb`; the message is the one line a user sees."""


def limit_bytes(max_gb: float | None) -> int | None:
    """`probing.max_activation_gb` in bytes (None = no limit); ConfigError for a non-positive value."""
    if max_gb is None:
        return None
    if float(max_gb) <= 0:
        raise ConfigError(f"probing.max_activation_gb must be > 0 or null, got {max_gb}")
    return int(float(max_gb) * GB)


def layer_bytes(net: nn.Module, layers: Sequence[str], image: torch.Tensor) -> dict[str, int]:
    """Bytes one image adds to the float32 activation cache, per layer (one forward pass of `image` [1, 3, H, W])."""
    with torch.no_grad(), eval_mode(net), capture(net, list(layers)) as cache:
        forward_until(net, image, list(layers))
        return {name: int(cache[name][0].numel()) * 4 for name in layers}


def size(n_bytes: float) -> str:
    """'6.1 GB', '350.2 MB', '12.0 kB'."""
    for unit, scale in (("GB", GB), ("MB", 1024**2)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes / 1024:.1f} kB"


def describe(sizes: dict[str, int], n: int) -> str:
    """'features.2 6.1 GB, features.6 3.1 GB' for n images, largest first."""
    return ", ".join(f"{k} {size(v * n)}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]))


def fit_layers(
    net: nn.Module, layers: Sequence[str], image: torch.Tensor, n: int, max_gb: float | None
) -> tuple[list[str], str | None]:
    """(the default layers whose cache for n images fits in max_gb, a sentence on what was left out or None).

    Leaves out the largest layers per image first; keeps at least one layer (the smallest).
    """
    limit = limit_bytes(max_gb)
    layers = list(layers)
    if limit is None or not layers:
        return layers, None
    sizes = layer_bytes(net, layers, image)
    kept = dict(sizes)
    for name in sorted(sizes, key=lambda k: -sizes[k]):
        if sum(kept.values()) * n <= limit or len(kept) == 1:
            break
        del kept[name]
    if len(kept) == len(sizes):
        return layers, None
    dropped = {k: v for k, v in sizes.items() if k not in kept}
    why = (
        f"left out default probe layer(s) {describe(dropped, n)}: the activations of all {len(sizes)} over {n} "
        f"probe images would take {size(sum(sizes.values()) * n)}, over probing.max_activation_gb="
        f"{max_gb:g}; kept {size(sum(kept.values()) * n)} ({', '.join(kept)}). Name layers with "
        f"probing.layers=[...] or raise the limit"
    )
    log.warning("probing: %s", why)
    return [k for k in layers if k in kept], why


def probe_layers(
    net: nn.Module,
    configured: Sequence[str] | None,
    images: torch.Tensor,
    max_gb: float | None,
    device: torch.device | str = "cpu",
) -> list[str]:
    """The round's probe layers: `probing.layers` as configured, else the model's defaults less those whose
    activations over the probe set (`images`, [N, 3, H, W]; the first is run on `device`) would not fit."""
    if configured:
        return list(configured)
    return fit_layers(net, default_layers(net), images[:1].to(device), len(images), max_gb)[0]


def check_capture(sizes: dict[str, int], n: int, limit: int | None) -> None:
    """Raise ActivationMemoryError when capturing these layers (bytes per image) for n images exceeds `limit`."""
    total = sum(sizes.values()) * n
    if limit is None or total <= limit:
        return
    raise ActivationMemoryError(
        f"the activations of {len(sizes)} layer(s) over {n} probe images would take {size(total)} "
        f"({describe(sizes, n)}), over probing.max_activation_gb={limit / GB:g}; probe fewer or smaller layers "
        f"(probing.layers=[...]), fewer images (probing.probe_set_size=...) or raise the limit"
    )
