"""Default probe layers of any CNN: the outputs of its stages or blocks, after their activation.

Why not every Conv2d (what ``hook_points`` lists for non-Inception models): a raw conv output comes before batch
norm and ReLU, so a dead-unit fraction is always 0, mean activations are negative, and the list ends with the
classifier head (examples and featvis then ran on logits). Researchers read a CNN by its blocks, so:

- InceptionV1 (anything with a ``plan``): its Lucid layers (stem convs and mixed outputs) -- chosen by the caller;
- a timm model: its ``feature_info`` modules (the stage outputs timm's own ``features_only`` returns);
- ResNet-like (``layer1``, ``layer2``, ... are Sequentials): every block, ``layer1.0`` ... ``layer4.1``;
- a ``features`` Sequential (torchvision VGG, AlexNet, MobileNet, EfficientNet, ConvNeXt): its ReLUs when it
  has ReLUs as direct children (VGG-style plain stacks), else each child ``features.N`` (blocks);
- anything else: the top-level children whose output is a feature map of another shape than their input
  (found with one forward pass), else every ReLU that outputs a feature map.

A layer whose output is not a feature map [N, C, H, W] (the head, a flatten) is never a default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

_STAGE = re.compile(r"layer\d+$")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
# A pooled copy of the layer before it, or a regulariser: never a probe layer of its own.
_SKIP = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Flatten)


def _timm_layers(net: nn.Module) -> list[str]:
    info = getattr(net, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "module_name"):  # timm's FeatureInfo object (features_only models)
        return [str(info.module_name(i)) for i in range(len(info))]
    try:
        names = [str(entry["module"]) for entry in info]
    except (TypeError, KeyError):
        return []
    modules = dict(net.named_modules())
    return [name for name in names if name in modules]


def _resnet_layers(net: nn.Module) -> list[str]:
    stages = [(n, m) for n, m in net.named_children() if _STAGE.match(n) and isinstance(m, nn.Sequential)]
    return [f"{name}.{child}" for name, stage in stages for child, _ in stage.named_children()]


def _features_layers(net: nn.Module) -> list[str]:
    features = getattr(net, "features", None)
    if not isinstance(features, nn.Sequential):
        return []
    children = list(features.named_children())
    if any(isinstance(m, _ACTIVATIONS) for _, m in children):  # a plain stack (VGG): its ReLUs and any blocks
        return [f"features.{n}" for n, m in children if isinstance(m, _ACTIVATIONS) or _is_block(m)]
    return [f"features.{n}" for n, _ in children]


def _is_block(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def _output_shapes(net: nn.Module, names: Iterable[str], image_size: int) -> dict[str, tuple[tuple, tuple]] | None:
    """name -> (input shape, output shape) from one forward pass on a blank image; None when the pass fails."""
    modules = dict(net.named_modules())
    shapes: dict[str, tuple[tuple, tuple]] = {}
    handles = []

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
                shapes.setdefault(name, (tuple(args[0].shape), tuple(output.shape)))

        return hook

    was_training = {m: m.training for m in net.modules()}
    try:
        handles = [modules[n].register_forward_hook(record(n)) for n in names]
        net.eval()
        param = next(net.parameters(), None)
        x = torch.zeros(1, 3, image_size, image_size, device=param.device if param is not None else None)
        with torch.no_grad():
            net(x)
    except Exception:
        return None
    finally:
        for handle in handles:
            handle.remove()
        for module, training in was_training.items():
            module.training = training
    return shapes


def _generic_layers(net: nn.Module, image_size: int) -> list[str]:
    relus = [n for n, m in net.named_modules() if isinstance(m, _ACTIVATIONS)]
    shapes = _output_shapes(net, [n for n, _ in net.named_modules() if n], image_size)
    if shapes is None:
        return relus

    def changing(parent: nn.Module, prefix: str) -> list[str]:
        """Children whose output is a feature map of a new shape; a Sequential of such blocks is expanded."""
        out = []
        for name, child in parent.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, _SKIP) or path not in shapes:
                continue
            before, after = shapes[path]
            if len(after) != 4 or before == after:
                continue
            inner = changing(child, f"{path}.") if isinstance(child, nn.Sequential) else []
            out.extend(inner if len(inner) > 1 else [path])
        return out

    return changing(net, "") or [n for n in relus if n in shapes and len(shapes[n][1]) == 4]


def default_probe_layers(net: nn.Module, image_size: int = 64) -> list[str]:
    """Stage/block outputs of ``net`` as dotted module paths (see the module doc for the rule per family).

    Usage: ``default_probe_layers(torchvision.models.resnet18())`` -> ``['layer1.0', 'layer1.1', ..., 'layer4.1']``
    """
    for rule in (_timm_layers, _resnet_layers, _features_layers):
        found = rule(net)
        if found:
            return found
    return _generic_layers(net, image_size)


def _width(module: nn.Module) -> int | None:
    for attr in ("out_channels", "num_features", "out_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return None


def _channels_from_modules(net: nn.Module, name: str) -> int | None:
    """Output channels of module ``name`` read from its weights: the last conv/norm/linear inside it, or (for a
    parameterless module such as a ReLU) the last one before it in module order."""
    target = net.get_submodule(name)
    if next(target.parameters(), None) is not None:
        widths = [w for m in target.modules() if (w := _width(m)) is not None]
        return widths[-1] if widths else None
    before = None
    for path, module in net.named_modules():
        if path == name:
            return before
        before = _width(module) or before
    return None


class LayerChannels(dict):
    """Layer name -> channels for the named hook points, and on lookup for any other module path of the model.

    Why a dict that answers for more than it lists: the listed names are what the record shows (the model's
    convs/linears, or InceptionV1's layers); probes also address stage/block outputs (``layer4.1``,
    ``features.3``) whose channels are read from the weights inside them when asked.
    """

    def __init__(self, model: nn.Module, listed: dict[str, int]) -> None:
        super().__init__(listed)
        self._modules = dict(model.named_modules())
        self._model = model

    def __missing__(self, name: str) -> int:
        if name not in self._modules or not name:
            raise KeyError(name)
        found = _channels_from_modules(self._model, name)
        if found is None:
            raise KeyError(name)
        return found

    def knows(self, name: str) -> bool:
        """True for a listed layer or any module path whose channels can be read."""
        try:
            self[name]
        except KeyError:
            return False
        return True
