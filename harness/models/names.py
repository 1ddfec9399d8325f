"""Layer names for any model: name -> module (hook points), name -> channels, and name resolution.

Why with the models: every consumer (hooks, surgery, freezing, probes, config checks) addresses layers
by name, never by module object or index, and the answer depends only on the network: InceptionV1
answers with Lucid names (its own ``hook_points()``), any other model with the dotted module paths of
its Conv2d/Linear layers. A bad name fails with one line listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from harness.facts.errors import ConfigError


def hook_points(model: nn.Module) -> dict[str, nn.Module]:
    """Layer name -> module whose forward output is that layer's activation.

    InceptionV1 (anything with a ``hook_points()`` method) uses its own names;
    other models map dotted module paths of every Conv2d/Linear, in module order.
    """
    own = getattr(model, "hook_points", None)
    if callable(own):
        return own()
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def default_layers(net: nn.Module) -> list[str]:
    """Main layers to probe: InceptionV1's stem and mixed outputs (branches on request); else the model's
    stage/block outputs (``harness.models.probe_layers``)."""
    from harness.models.probe_layers import default_probe_layers

    plan = getattr(net, "plan", None)
    if plan is not None:
        return [name for name, _, _ in plan.stem] + [block.name for block in plan.blocks]
    return default_probe_layers(net)


def layer_names(model: nn.Module) -> set[str]:
    """Every name a probe may address on ``model``: its hook points (Lucid names for InceptionV1) and any
    dotted module path (``layer4.1``, ``features.3``)."""
    return set(hook_points(model)) | {name for name, _ in model.named_modules() if name}


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


def resolve(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Layer name -> module. Named hook points first, then any dotted submodule path."""
    points = hook_points(model)
    out = {}
    for name in names:
        if name in points:
            out[name] = points[name]
            continue
        try:
            out[name] = model.get_submodule(name)
        except AttributeError:
            shown = list(points)
            more = f" (and {len(shown) - 60} more)" if len(shown) > 60 else ""
            raise ConfigError(f"unknown layer {name!r}; valid: {', '.join(shown[:60])}{more}") from None
    return out
