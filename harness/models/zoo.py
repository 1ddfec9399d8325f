"""Models by name, and name -> module / channel lookups that work for any of them.

Why: experiments compare our InceptionV1 against torchvision architectures (random, or trained
weights from a file), and
probes address layers by name only. :func:`hook_points` and :func:`layers` give
every model the same name-based interface: InceptionV1 answers with Lucid names,
any other model with the dotted module paths of its Conv2d/Linear layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torchvision
from torch import nn

from harness.errors import ConfigError

# These torchvision models default to auxiliary heads and a (warned about) legacy
# init when built without weights; a plain classifier with explicit init is what we train.
_NO_WEIGHTS_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def classification_models() -> list[str]:
    """Names of torchvision's image-classification models (no detection/segmentation/video)."""
    return torchvision.models.list_models(module=torchvision.models)


def torchvision_model(name: str, num_classes: int = 1000, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build torchvision model ``name``, random or with weights from a state-dict file (never downloads).

    ``weights`` is a path to a torchvision state dict (or a checkpoint dict holding ``state_dict``/``model``),
    loaded with ``weights_only=True``; a classifier with another number of classes keeps its fresh init.

    Usage (Hydra): ``_target_: harness.models.torchvision_model`` with ``name: resnet18``, ``num_classes: 10``
    """
    names = classification_models()
    if name not in names:
        raise ConfigError(f"unknown torchvision model {name!r}; valid: {', '.join(names)}")
    if weights is not None and not Path(str(weights)).is_file():
        raise ConfigError(f"model.weights={weights!r} is not a file: torchvision models are built untrained here "
                          f"(nothing is downloaded); point model.weights to a saved state dict")  # fmt: skip
    config = {**_NO_WEIGHTS_DEFAULTS.get(name, {}), **kwargs}
    try:
        net = torchvision.models.get_model(name, weights=None, num_classes=int(num_classes), **config)
    except TypeError as err:  # unknown keyword for this architecture
        message = " ".join(str(err).split())
        raise ConfigError(f"bad arguments for torchvision model {name!r}: {message}") from err
    if weights is not None:
        from harness.models.pretrained import load_torchvision_weights

        load_torchvision_weights(net, weights)
    return net


def hook_points(model: nn.Module) -> dict[str, nn.Module]:
    """Layer name -> module whose forward output is that layer's activation.

    InceptionV1 (anything with a ``hook_points()`` method) uses its own names;
    other models map dotted module paths of every Conv2d/Linear, in module order.
    """
    own = getattr(model, "hook_points", None)
    if callable(own):
        return own()
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def layers(model: nn.Module) -> dict[str, int]:
    """Layer name (as in :func:`hook_points`) -> output channels / features, without a forward pass."""
    channels = getattr(model, "channels", None)
    if isinstance(channels, dict):
        return dict(channels)
    from harness.models.probe_layers import LayerChannels

    out = {}
    for name, module in hook_points(model).items():
        out[name] = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
    return LayerChannels(model, out)  # also answers for block outputs (layer4.1, features.3) on lookup
