"""The model families the harness is tested on, as the Hydra overrides that select each one.

Why a module: the per-family end-to-end tests (`tests/test_any_model.py`) and the model x probe benchmark
(`benchmarks/probes_224.py`) must cover the same families; defined once here, both import it. Any other
torchvision or timm classifier, or your own `nn.Module` (`model=custom`), may work too: these are the ones
checked on every change (docs/own-model-and-data.md).
"""

from __future__ import annotations

INCEPTION: dict[str, tuple[str, ...]] = {
    "inception_v1_tiny": ("model=inception_v1_tiny",),
    "inception_v1": ("model=inception_v1",),
}
OTHER: dict[str, tuple[str, ...]] = {
    "resnet18": ("model=torchvision", "model.name=resnet18"),
    "vgg11_bn": ("model=torchvision", "model.name=vgg11_bn"),
    "mobilenet_v3_small": ("model=torchvision", "model.name=mobilenet_v3_small"),
    "efficientnet_b0": ("model=torchvision", "model.name=efficientnet_b0"),
    "convnext_tiny": ("model=torchvision", "model.name=convnext_tiny"),
    "timm_resnet18": ("model=timm", "model.name=resnet18"),
}
FAMILIES: dict[str, tuple[str, ...]] = {**INCEPTION, **OTHER}
