"""torchvision classification models by name.

Why: experiments compare our InceptionV1 against torchvision architectures (random, or trained
weights from a file). Name -> module / channel lookups that work for any model live in
:mod:`harness.models.names` (re-exported here for older imports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torchvision
from torch import nn

from harness.facts.errors import ConfigError
from harness.models.names import hook_points, layers

__all__ = ["classification_models", "hook_points", "layers", "torchvision_model"]

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
