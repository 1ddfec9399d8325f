"""`+model.widen.<module path>=N` on any traceable model: function preserved, coupled channels refused by name."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from harness.facts.errors import ConfigError
from harness.models.graph_widen import plan_widen, widen_modules
from harness.train import build_model

# family -> (builder, widen edits, the consumer whose new input columns the negative control fills)
CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=5), {"layer2.0.conv1": 8}, "layer2.0.conv2"),
    "vgg11_bn": (lambda: torchvision.models.vgg11_bn(num_classes=5), {"features.25": 4}, "classifier.0"),
    "mobilenet_v3_small": (
        lambda: torchvision.models.mobilenet_v3_small(num_classes=5),
        {"features.4.block.0.0": 8},
        "features.4.block.3.0",
    ),  # fmt: skip
    "efficientnet_b0": (
        lambda: torchvision.models.efficientnet_b0(num_classes=5),
        {"features.2.0.block.0.0": 8},
        "features.2.0.block.3.0",
    ),  # fmt: skip
    "convnext_tiny": (
        lambda: torchvision.models.convnext_tiny(num_classes=5),
        {"features.1.0.block.3": 8},
        "features.1.0.block.5",
    ),  # fmt: skip
    "timm_resnet18": (
        lambda: __import__("timm").create_model("resnet18", pretrained=False, num_classes=5),
        {"layer2.0.conv1": 8},
        "layer2.0.conv2",
    ),  # fmt: skip
    "timm_efficientnet_b0": (
        lambda: __import__("timm").create_model("efficientnet_b0", num_classes=5),
        {"blocks.1.0.conv_pw": 16},
        "blocks.1.0.conv_pwl",
    ),  # fmt: skip
}


@pytest.mark.parametrize("family", list(CASES))
def test_widen_preserves_the_function(family: str, one_thread) -> None:
    if family.startswith("timm"):
        pytest.importorskip("timm")
    make, edits, consumer = CASES[family]
    torch.manual_seed(0)
    net = make().eval()
    wide = widen_modules(net, edits).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = net(x), wide(x)
    scale = float(before.abs().max())  # random-init MobileNetV3 logits are ~1e-10: compare relative too
    assert (before - after).abs().max() <= 1e-5 and (before - after).abs().max() <= 1e-5 * scale
    grown = sum(p.numel() for p in wide.parameters()) - sum(p.numel() for p in net.parameters())
    assert grown > 0 and type(wide) is type(net)
    for name, n in edits.items():
        old, new = net.get_submodule(name), wide.get_submodule(name)
        assert getattr(new, "out_channels", getattr(new, "out_features", None)) == getattr(
            old, "out_channels", getattr(old, "out_features", None)) + n  # fmt: skip
    # Negative control: the same edit with non-zero outgoing weights changes what the consumer computes.
    # (Compared at the consumer: timm zero-inits each block's last BN and ConvNeXt scales blocks by 1e-6.)
    reader = wide.get_submodule(consumer)
    with torch.no_grad():
        assert (_output(net, consumer, x) - _output(wide, consumer, x)).abs().max() <= 1e-5
        width = reader.weight.shape[1] - net.get_submodule(consumer).weight.shape[1]
        reader.weight[:, -width:] = torch.randn_like(reader.weight[:, -width:])
        changed = _output(net, consumer, x) - _output(wide, consumer, x)
        assert changed.abs().max() > 1e-3 * _output(net, consumer, x).abs().max()


def _output(net: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    seen = {}
    handle = net.get_submodule(name).register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    try:
        net(x)
    finally:
        handle.remove()
    return seen["out"]


def test_residual_grouped_and_bad_targets_are_refused_by_name() -> None:
    resnet = torchvision.models.resnet18(num_classes=5)
    with pytest.raises(
        ConfigError, match=r"residual add.*layer2\.0\.conv2.*layer2\.0\.downsample\.0.*layer2\.1\.conv2"
    ):
        plan_widen(resnet, "layer2.0.conv2", 4)
    with pytest.raises(ConfigError, match=r"layer2\.0\.bn1.*valid: conv1, layer1\.0\.conv1"):
        plan_widen(resnet, "layer2.0.bn1", 4)
    with pytest.raises(ConfigError, match="model's output"):
        plan_widen(resnet, "fc", 4)
    grouped = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(8, 2))  # fmt: skip
    with pytest.raises(ConfigError, match=r"grouped conv \(1, groups=2\)"):
        plan_widen(grouped, "0", 4)
    with pytest.raises(ConfigError, match="only adding units"):
        plan_widen(resnet, "layer2.0.conv1", -2)


def test_flatten_and_cat_offsets() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 5, 1)
            self.fc = nn.Linear(9 * 8 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.cat([torch.relu(self.a(x)), self.b(x)], 1).flatten(1))

    torch.manual_seed(0)
    net = Net().eval()
    plan = plan_widen(net, "a", 2, image_size=8)
    assert plan.inputs == {"fc": (4 * 64, 2 * 64)}  # after a's 4 channels, each 8x8 wide in the flattened vector
    x = torch.rand(2, 3, 8, 8)
    wide = widen_modules(net, {"a": 2}, image_size=8)
    assert wide.fc.in_features == 11 * 64 and (net(x) - wide(x)).abs().max() <= 1e-6


def test_command_line_spelling_builds_a_widened_torchvision_model(make_cfg) -> None:
    cfg = make_cfg("model=torchvision", "model.name=resnet18", "+model.widen.layer2.0.conv1=8")
    net = build_model(cfg, num_classes=5, image_size=32)
    assert net.layer2[0].conv1.out_channels == 136 and net.layer2[0].bn1.num_features == 136
    assert net.layer2[0].conv2.in_channels == 136
    bad = make_cfg("model=torchvision", "model.name=resnet18", "+model.widen.layer2.0.conv2=8")
    with pytest.raises(ConfigError, match="residual add"):
        build_model(bad, num_classes=5, image_size=32)
