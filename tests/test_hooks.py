"""Hooks: same output with and without capture, nothing left behind, clear errors for bad names."""

from __future__ import annotations

import pytest
import torch

from harness.facts.errors import ConfigError
from harness.models import InceptionV1, torchvision_model
from harness.models.hooks import capture, eval_mode, run_with_cache


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture
def net() -> InceptionV1:
    torch.manual_seed(0)
    return InceptionV1(num_classes=4, width=0.125, batch_norm=True, lrn=False, last_layer="mixed3b").eval()


def test_hooked_output_equals_plain_output(net) -> None:
    x = torch.rand(2, 3, 32, 32)
    plain = net(x)
    out, cache = run_with_cache(net, x, ["conv2d2", "mixed3b", "mixed3b_5x5"])
    assert torch.equal(out, plain) and _no_hooks(net)
    assert cache["mixed3b_5x5"].shape[1] == net.channels["mixed3b_5x5"]
    # the mixed layer is the concat of its branches: the 5x5 block sits after 1x1 and 3x3
    start = net.channels["mixed3b_1x1"] + net.channels["mixed3b_3x3"]
    assert torch.equal(cache["mixed3b"][:, start : start + net.channels["mixed3b_5x5"]], cache["mixed3b_5x5"])


def test_pre_relu_capture_has_negative_values(net) -> None:
    _, post = run_with_cache(net, torch.rand(2, 3, 32, 32), ["conv2d2"])
    _, pre = run_with_cache(net, torch.rand(2, 3, 32, 32), ["conv2d2"], pre_relu=True)
    assert post["conv2d2"].min() >= 0 and pre["conv2d2"].min() < 0


def test_no_hook_survives_an_exception(net) -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with capture(net, ["conv2d0", "mixed3a"]):
            net(torch.rand(1, 3, 32, 32))
            raise RuntimeError("inside")
    assert _no_hooks(net)


def test_unknown_layer_lists_valid_names(net) -> None:
    with pytest.raises(ConfigError, match="mixed3b_5x5") as info:
        run_with_cache(net, torch.rand(1, 3, 32, 32), ["mixed9z"])
    assert "mixed9z" in str(info.value) and _no_hooks(net)


def test_torchvision_dotted_paths() -> None:
    model = torchvision_model("resnet18", num_classes=3).eval()
    _, cache = run_with_cache(model, torch.rand(1, 3, 64, 64), ["layer1.0.conv1", "layer2"])
    assert cache["layer1.0.conv1"].shape[1] == 64 and cache["layer2"].shape[1] == 128 and _no_hooks(model)


def test_eval_mode_restores_each_module(net) -> None:
    net.train()
    net.features.conv2d0.eval()  # a mixed state must come back exactly
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert net.training and not net.features.conv2d0.training and net.features.conv2d1.training


def test_forward_until_stops_after_the_last_wanted_layer_with_the_same_values() -> None:
    import torch

    from harness.models import InceptionV1
    from harness.models.hooks import capture, forward_until

    torch.manual_seed(0)
    net = InceptionV1(num_classes=4, width=0.125, batch_norm=False, lrn=False, last_layer="mixed4b").eval()
    x = torch.rand(2, 3, 64, 64)
    calls = []
    late = net.features.mixed4a.register_forward_hook(lambda *a: calls.append("mixed4a"))
    with torch.no_grad(), capture(net, ["conv2d2", "mixed3b"]) as full:
        net(x)
        full = dict(full)
    calls.clear()
    with torch.no_grad(), capture(net, ["conv2d2", "mixed3b"]) as cut:
        forward_until(net, x, ["conv2d2", "mixed3b"])
    late.remove()
    assert calls == []  # nothing after mixed3b ran
    assert all(torch.equal(full[k], cut[k]) for k in full)
    assert all(not m._forward_hooks for m in net.modules())  # no hook left behind
