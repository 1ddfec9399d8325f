"""timm's model zoo by name, built offline: ``model=timm model.name=resnet18``.

Why timm: it is where the ecosystem's CNNs live (ResNets with tricks, EfficientNets, ConvNeXts, RegNets ...),
each with a ``feature_info`` listing its stage outputs, which :mod:`harness.models.probe_layers` uses as the
default probe layers. Models are always built with ``pretrained=False`` (nothing is downloaded); trained
weights come from a state-dict file through ``model.weights`` (harness/models/custom.py loads them).
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from harness.facts.errors import ConfigError


def timm_model(name: str, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)`` with one-line errors.

    Usage (Hydra): ``_target_: harness.models.timm_models.timm_model`` with ``name: resnet18``
    """
    try:
        import timm
    except ModuleNotFoundError:
        raise ConfigError("model=timm needs the timm package: pip install timm") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"; did you mean: {', '.join(close)}" if close else "; timm.list_models() lists them"
        raise ConfigError(f"unknown timm model {name!r}{hint}")
    try:
        return timm.create_model(name, pretrained=False, num_classes=int(num_classes), **kwargs)
    except TypeError as err:  # an argument this architecture does not take
        raise ConfigError(f"bad arguments for timm model {name!r}: {' '.join(str(err).split())}") from None
