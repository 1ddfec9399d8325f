"""InceptionV1 topology, config edits and the torchvision zoo.

Narrow widths keep every forward pass cheap; the full-width model is only built
to read its channel plan and parameter count.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.facts.edits import BRANCHES, plan_inception
from harness.facts.errors import ConfigError
from harness.models import InceptionV1, hook_points, layers, torchvision_model
from harness.models.inception_v1 import same_pads

NARROW = {"width": 0.0625, "batch_norm": True, "lrn": False}

# Reference table (shared/reference/inceptionv1.md): mixed layer -> output channels.
REFERENCE_MIXED = {
    "mixed3a": 256,
    "mixed3b": 480,
    "mixed4a": 508,
    "mixed4b": 512,
    "mixed4c": 512,
    "mixed4d": 528,
    "mixed4e": 832,
    "mixed5a": 832,
    "mixed5b": 1024,
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def narrow(**kwargs) -> InceptionV1:
    return InceptionV1(num_classes=kwargs.pop("num_classes", 5), **{**NARROW, **kwargs})


def conv_inputs(model: InceptionV1) -> dict[str, int]:
    """Name -> in_channels of the conv behind every stem layer and branch."""
    return {name: m.conv.in_channels for name, m in hook_points(model).items() if hasattr(m, "conv")}


def diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


# ---------------------------------------------------------------- topology


@pytest.mark.parametrize(("size", "width"), [(32, 0.125), (64, 0.125), (224, 0.0625)])
def test_output_shape(size: int, width: float) -> None:
    model = InceptionV1(num_classes=7, width=width, lrn=True)
    assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_full_width_matches_reference_without_forward() -> None:
    model = InceptionV1(num_classes=1008)
    channels = layers(model)
    assert {k: channels[k] for k in REFERENCE_MIXED} == REFERENCE_MIXED
    assert [channels[k] for k in ("conv2d0", "conv2d1", "conv2d2")] == [64, 64, 192]
    assert channels["mixed4a_3x3"] == 204 and channels["mixed5b_5x5_bottleneck"] == 48
    assert model.fc.in_features == 1024 and model.fc.out_features == 1008
    # Conv weights + biases of Lucid's inception5h, summed from the reference table by hand.
    conv_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith("features."))
    assert conv_params == 6_033_180


def test_hook_points_order_and_names() -> None:
    points = hook_points(narrow())
    names = list(points)
    assert names[:5] == ["conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3a_1x1"]
    assert names[3:10] == ["mixed3a"] + [f"mixed3a_{b}" for b in BRANCHES]
    assert names[-1] == "mixed5b_pool_reduce"
    assert len(names) == 3 + 9 * 7
    assert list(layers(narrow())) == names
    assert all("." not in n and "-" not in n for n in names)  # usable as Hydra keys


def test_same_padding_amounts() -> None:
    assert same_pads(224, 7, 2) == (2, 3)
    assert same_pads(112, 3, 2) == (0, 1)
    assert same_pads(57, 3, 2) == (1, 1)
    assert same_pads(5, 1, 1) == (0, 0)


def test_same_padding_spatial_sizes_at_224() -> None:
    model = narrow().eval()
    sizes: dict[str, int] = {}
    modules = {
        **hook_points(model),
        **{n: model.features.get_submodule(n) for n in ("maxpool0", "maxpool1", "maxpool4", "maxpool10")},
    }
    for name, module in modules.items():
        module.register_forward_hook(lambda _m, _i, out, name=name: sizes.__setitem__(name, out.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    expected = {
        "conv2d0": 112,
        "maxpool0": 56,
        "conv2d2": 56,
        "maxpool1": 28,
        "mixed3b": 28,
        "maxpool4": 14,
        "mixed4e": 14,
        "maxpool10": 7,
        "mixed5b": 7,
    }
    assert {k: sizes[k] for k in expected} == expected


def test_mixed_output_is_concat_of_branches() -> None:
    model = narrow().eval()
    points = hook_points(model)
    seen: dict[str, torch.Tensor] = {}
    for name in ["mixed3b"] + [f"mixed3b_{b}" for b in ("1x1", "3x3", "5x5", "pool_reduce")]:
        points[name].register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    branches = [seen[f"mixed3b_{b}"] for b in ("1x1", "3x3", "5x5", "pool_reduce")]
    assert torch.equal(torch.cat(branches, dim=1), seen["mixed3b"])
    assert seen["mixed3b"].min() >= 0  # post-ReLU


def test_pre_relu_readable_from_bn() -> None:
    for batch_norm in (False, True):
        unit = hook_points(narrow(batch_norm=batch_norm))["mixed4a_5x5"]
        assert isinstance(unit.conv, nn.Conv2d) and (unit.conv.bias is None) == batch_norm
        assert isinstance(unit.bn, nn.BatchNorm2d if batch_norm else nn.Identity)


def test_signal_survives_depth_without_batch_norm() -> None:
    model = narrow(batch_norm=False, lrn=True).eval()
    with torch.no_grad():
        std = model.features(torch.randn(4, 3, 64, 64)).std().item()
    assert 0.1 < std < 100  # He init; PyTorch's default would shrink it ~100x


def test_lrn_only_when_asked() -> None:
    def has_lrn(model: nn.Module) -> bool:
        return any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())

    assert has_lrn(narrow(lrn=True)) and not has_lrn(narrow(lrn=False))


def test_width_multiplier_scales_every_layer() -> None:
    full = plan_inception().channels
    half = layers(InceptionV1(width=0.5))
    for name, n in full.items():
        if name not in REFERENCE_MIXED:
            assert half[name] == max(1, round(n * 0.5)), name
    tiny = layers(InceptionV1(width=0.001, num_classes=2))
    assert tiny["mixed3a_1x1"] == 1 and tiny["mixed3a"] == 4


# ---------------------------------------------------------------- edits


def test_widen_branch_changes_only_downstream_inputs() -> None:
    base, wide = narrow(), narrow(widen={"mixed3b_5x5": 32})
    assert diff(layers(base), layers(wide)) == {"mixed3b_5x5": 32, "mixed3b": 32}
    assert diff(conv_inputs(base), conv_inputs(wide)) == {
        f"mixed4a_{b}": 32 for b in ("1x1", "3x3_bottleneck", "5x5_bottleneck", "pool_reduce")
    }
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_widen_bottleneck() -> None:
    base, wide = narrow(), narrow(widen={"mixed3a_3x3_bottleneck": 5})
    assert diff(layers(base), layers(wide)) == {"mixed3a_3x3_bottleneck": 5}
    assert diff(conv_inputs(base), conv_inputs(wide)) == {"mixed3a_3x3": 5}
    wide(torch.randn(2, 3, 32, 32))


def test_widen_stem_layer() -> None:
    base, wide = narrow(), narrow(widen={"conv2d1": 4})
    assert diff(layers(base), layers(wide)) == {"conv2d1": 4}
    assert diff(conv_inputs(base), conv_inputs(wide)) == {"conv2d2": 4}
    wide(torch.randn(2, 3, 32, 32))


def test_insert_after_mixed_layer() -> None:
    base, ins = narrow(), narrow(insert=["mixed3b"])
    channels = layers(ins)
    assert channels["mixed3b_ins1"] == channels["mixed3b"]
    assert all(channels[f"mixed3b_ins1_{b}"] == channels[f"mixed3b_{b}"] for b in BRANCHES)
    assert diff(layers(base), channels) == {k: v for k, v in channels.items() if k.startswith("mixed3b_ins1")}
    names = list(hook_points(ins))
    assert names.index("mixed3b_pool_reduce") < names.index("mixed3b_ins1") < names.index("mixed4a")
    order = [n for n, _ in ins.features.named_children()]
    assert order.index("mixed3b") < order.index("mixed3b_ins1") < order.index("maxpool4")
    assert hook_points(ins)["mixed3b_ins1_1x1"].conv.in_channels == channels["mixed3b"]
    assert ins(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_insert_twice_chains() -> None:
    names = list(layers(narrow(insert=["mixed4e", "mixed4e"])))
    order = [n for n in names if n.startswith("mixed") and n.count("_") <= 1 and not n.endswith(tuple(BRANCHES))]
    assert order[-4:] == ["mixed4e_ins1", "mixed4e_ins2", "mixed5a", "mixed5b"]


def test_insert_then_widen_compose() -> None:
    model = narrow(insert=["mixed3b"], widen={"mixed3b_5x5": 4, "mixed3b_ins1_5x5": 8})
    base, channels, points = layers(narrow()), layers(model), hook_points(model)
    assert channels["mixed3b"] == base["mixed3b"] + 4
    assert points["mixed3b_ins1_pool_reduce"].conv.in_channels == channels["mixed3b"]
    assert channels["mixed3b_ins1_5x5"] == base["mixed3b_5x5"] + 8  # copies unwidened widths, then widens
    assert channels["mixed3b_ins1"] == base["mixed3b"] + 8
    assert points["mixed4a_1x1"].conv.in_channels == channels["mixed3b_ins1"]
    model(torch.randn(2, 3, 32, 32))


def test_hydra_containers_are_accepted() -> None:
    instantiate = pytest.importorskip("hydra.utils").instantiate
    cfg = {
        "_target_": "harness.models.InceptionV1",
        "num_classes": 3,
        **NARROW,
        "widen": {"mixed3b_5x5": 4},
        "insert": ["mixed3b"],
    }
    model = instantiate(cfg)
    assert layers(model)["mixed3b_5x5"] == layers(narrow())["mixed3b_5x5"] + 4 and "mixed3b_ins1" in layers(model)
    resnet = instantiate({"_target_": "harness.models.torchvision_model", "name": "resnet18", "num_classes": 4})
    assert resnet.fc.out_features == 4


# ---------------------------------------------------------------- speed-relevant modes


def test_channels_last_and_bf16_autocast() -> None:
    model = narrow().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert torch.allclose(ref, cl, atol=1e-5)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x.to(memory_format=torch.channels_last))
    out.float().sum().backward()


# ---------------------------------------------------------------- bad input

BAD = [
    ({"widen": {"mixed3b_7x7": 4}}, ["unknown branch 'mixed3b_7x7'", "conv2d0", "mixed3b_5x5", "mixed5b_pool_reduce"]),
    ({"widen": {"mixed3b": 4}}, ["mixed3b_1x1", "mixed3b_pool_reduce"]),
    ({"widen": {"mixed3b_ins1_5x5": 4}}, ["unknown branch", "mixed3b_5x5"]),
    ({"widen": {"mixed3b_5x5": 1.5}}, ["integer >= 0"]),
    ({"widen": {"mixed3b_5x5": "abc"}}, ["integer >= 0"]),
    ({"widen": {"mixed3b_5x5": True}}, ["integer >= 0"]),
    ({"widen": {"mixed3b_5x5": -6}}, ["mixed3b_5x5", "with 0 channels", ">= 1"]),  # prunes all 6: refused
    ({"widen": ["mixed3b_5x5"]}, ["mapping"]),
    ({"insert": ["mixed9z"]}, ["'mixed9z'", "mixed3a", "mixed5b"]),
    ({"insert": ["conv2d2"]}, ["'conv2d2'", "mixed3a", "mixed5b"]),
    ({"insert": 3}, ["list of mixed layer names"]),
    ({"width": 0}, ["model.width", "> 0"]),
    ({"num_classes": 0}, ["num_classes"]),
    ({"dropout": 1.0}, ["dropout", "[0, 1)"]),
]


@pytest.mark.parametrize(("kwargs", "fragments"), BAD)
def test_bad_config_is_one_line_config_error(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        InceptionV1(**{**NARROW, **kwargs})
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_input_too_small() -> None:
    model = narrow()
    message = "image size 16 px is too small for inception_v1: it needs at least 32 px"
    with pytest.raises(ConfigError, match=message):
        model.check_input_size(16)
    with pytest.raises(ConfigError, match=message):
        model(torch.randn(1, 3, 16, 40))
    model.check_input_size(32)


# ---------------------------------------------------------------- torchvision zoo


def test_torchvision_resnet18() -> None:
    model = torchvision_model("resnet18", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    channels = layers(model)
    assert channels["conv1"] == 64 and channels["layer4.1.conv2"] == 512 and channels["fc"] == 5
    assert set(hook_points(model)) == set(channels)


def test_torchvision_unknown_name_lists_choices() -> None:
    with pytest.raises(ConfigError) as info:
        torchvision_model("resnet19")
    message = str(info.value)
    assert "'resnet19'" in message and "resnet18" in message and "googlenet" in message and "\n" not in message


def test_torchvision_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="untrained"):
        torchvision_model("resnet18", weights="DEFAULT")
    with pytest.raises(ConfigError, match="bad arguments"):
        torchvision_model("resnet18", not_an_arg=1)


def test_googlenet_builds_without_weights() -> None:
    model = torchvision_model("googlenet", num_classes=3)
    assert model.aux1 is None
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_last_layer_truncates_the_network() -> None:
    model = InceptionV1(num_classes=8, width=0.25, batch_norm=True, lrn=False, last_layer="mixed4b")
    names = list(layers(model))
    assert names[-7:] == ["mixed4b"] + [f"mixed4b_{b}" for b in BRANCHES]
    assert "mixed4c" not in names and not hasattr(model.features, "maxpool10")
    assert model.fc.in_features == model.channels["mixed4b"]
    assert 90_000 < sum(p.numel() for p in model.parameters()) < 110_000  # the ~100k "tiny" default
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 8)


def test_last_layer_limits_edits_and_names() -> None:
    with pytest.raises(ConfigError, match="mixed4b"):
        InceptionV1(last_layer="mixed9")
    with pytest.raises(ConfigError, match="unknown branch 'mixed4c_5x5'"):
        InceptionV1(width=0.1, last_layer="mixed4b", widen={"mixed4c_5x5": 2})
    with pytest.raises(ConfigError, match="mixed4b"):
        InceptionV1(width=0.1, last_layer="mixed4b", insert=["mixed4c"])


def test_forward_from_a_stage_input_gives_the_same_logits() -> None:
    """resume_point/forward_from/forward_after (ablation's shortcuts): the rest of the network from a captured
    stage input, or after a captured stage output."""
    torch.manual_seed(0)
    net = InceptionV1(num_classes=5, width=0.25, insert=["mixed3b"], input_transform="lucid").eval()
    x = torch.rand(2, 3, 64, 64)
    for layer, stage in [("conv2d2", "conv2d2"), ("mixed3b_5x5", "mixed3b"), ("mixed3b_ins1", "mixed3b_ins1"),
                         ("mixed4a", "mixed4a"), ("mixed5b_pool_reduce", "mixed5b")]:  # fmt: skip
        name, module = net.resume_point(layer)
        assert name == stage and module is net.features.get_submodule(stage)
        seen: list[torch.Tensor] = []
        handles = [module.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0])),
                   module.register_forward_hook(lambda _m, _a, out, seen=seen: seen.append(out))]  # fmt: skip
        with torch.no_grad():
            full = net(x)
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            assert torch.allclose(net.forward_from(name, seen[0]), full, atol=1e-6)
            assert torch.allclose(net.forward_after(name, seen[1]), full, atol=1e-6)  # from the stage's output
    with pytest.raises(ConfigError, match="valid: conv2d0"):
        net.resume_point("mixed9z")
    with pytest.raises(ConfigError, match="maxpool0"):
        net.forward_from("mixed9z", x)
    with pytest.raises(ConfigError, match="maxpool0"):
        net.forward_after("mixed9z", x)
