"""Default probe layers and the default probes on torchvision and timm families and on plain user modules."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from harness.models import layers
from harness.models.families import OTHER
from harness.models.probe_layers import default_probe_layers
from harness.run.records import RunRecord
from tests.helpers import SMALL_PROBES, probe_cfg


def _tv(name: str) -> nn.Module:
    return torchvision.models.get_model(name, num_classes=5)


class Plain(nn.Module):
    """No stages, no `features`: the shape-changing children are its layers (the head is not)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.same = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())  # keeps the shape: not a default
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.same(self.down(self.conv(x)))).flatten(1))


class Functional(nn.Module):
    """Shape-preserving children only: every ReLU with a feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Linear(3, 5)
        self.fc_act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_act(self.b(self.a(x)).mean((2, 3))))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _tv("resnet18"), [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]),
        (lambda: _tv("vgg11_bn"), [f"features.{i}" for i in (2, 6, 10, 13, 17, 20, 24, 27)]),
        (lambda: _tv("mobilenet_v3_small"), [f"features.{i}" for i in range(13)]),
        (lambda: _tv("efficientnet_b0"), [f"features.{i}" for i in range(9)]),
        (lambda: _tv("convnext_tiny"), [f"features.{i}" for i in range(8)]),
        (Plain, ["conv", "down"]),
        (Functional, ["b"]),
    ],
    ids=["resnet18", "vgg11_bn", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "plain", "relus"],
)
def test_default_probe_layers_are_block_outputs(make, expected: list[str]) -> None:
    net = make()
    assert default_probe_layers(net) == expected
    head = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    assert head not in expected


def test_timm_uses_feature_info_and_channels_are_read_for_blocks() -> None:
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet18", pretrained=False, num_classes=5)
    assert default_probe_layers(net) == ["act1", "layer1", "layer2", "layer3", "layer4"]
    channels = layers(net)
    assert [channels[n] for n in default_probe_layers(net)] == [64, 64, 128, 256, 512]
    vgg = layers(_tv("vgg11_bn"))
    assert vgg["features.2"] == 64 and vgg["features.27"] == 512  # a ReLU: the channels of what precedes it
    assert "features.2" not in list(vgg)  # the record's channel list is unchanged: convs and linears
    with pytest.raises(KeyError):
        vgg["features.99"]


FAMILIES = OTHER  # every family but InceptionV1 (tested everywhere else)


# The big ones (a 120M-parameter VGG head, ConvNeXt, EfficientNet) take 1-3 min each on a busy 2-core machine;
# their default layers and channels are covered by the fast tests above, so their end-to-end runs are slow tests.
SLOW = ("vgg11_bn", "efficientnet_b0", "convnext_tiny")


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW else f for f in FAMILIES])
def test_default_probes_run_on_every_family(family: str, tmp_path: Path, one_thread) -> None:
    if family.startswith("timm"):
        pytest.importorskip("timm")
    from harness.probe import probe

    cfg = probe_cfg(tmp_path, *FAMILIES[family], *SMALL_PROBES)
    start = time.perf_counter()
    probe(cfg)
    record = RunRecord.load(tmp_path / "run")
    probes = record["probes"]
    assert {name: e["error"] for name, e in probes.items() if e["error"]} == {}, family
    assert set(probes) >= {"activations", "curves", "dissect", "linear", "cka", "spectra", "examples", "featvis"}
    first = default_probe_layers(_build(cfg))[0]
    assert f"activations/{first}/dead_fraction" in record["metrics"]
    assert f"cka/{first}/cka_to_reference" in record["metrics"]  # block names are layers of the reference too
    assert "layers" in probes["curves"]["info"]  # the curves probe says which layers it picked
    print(f"{family}: {time.perf_counter() - start:.1f} s")


def _build(cfg) -> nn.Module:
    from harness.train import build_model

    return build_model(cfg, 5, 32)


def test_data_without_masks_skips_dissect_and_attribute_readouts(tmp_path: Path, caplog, one_thread) -> None:
    from harness.probe import probe

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        folder = tmp_path / "images" / c
        folder.mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = probe_cfg(tmp_path, "data=imagefolder", f"data.root={tmp_path / 'images'}", "data.num_workers=0",
                     "data.image_size=32", "data.val_fraction=0.4", "probes=[dissect,linear]",
                     "probing.probe_set_size=8", "model=torchvision", "model.name=resnet18")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        probe(cfg)
    probes = RunRecord.load(tmp_path / "run")["probes"]
    assert probes["dissect"]["skipped"] == "no concept masks in the probe set" and not probes["dissect"]["error"]
    assert probes["linear"]["skipped"] is None and probes["linear"]["scalars"]  # the class read-out still runs
    lines = [r.getMessage() for r in caplog.records]
    assert "probe dissect skipped: no concept masks in the probe set" in lines
    assert any(line.startswith("linear: curvature and orientation skipped") for line in lines)


def test_harness_probe_builds_the_same_network_for_one_seed(tmp_path: Path, one_thread) -> None:
    """Without a checkpoint, harness-probe probes a random init: the same one on every run of a seed (it used to
    follow the global RNG, so two runs measured two different networks), another one for another seed."""
    from harness.probe import probe

    base = ["image_size=32", "probing.probe_set_size=16", "probes=[activations]"]  # the tiny InceptionV1
    metrics = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        torch.manual_seed(100 + len(metrics))  # whatever the global RNG holds
        probe(probe_cfg(tmp_path / run, *base, f"seed={seed}"))
        record = RunRecord.load(tmp_path / run / "run")
        per_layer = [k for k in record["metrics"] if k.startswith("activations/") and k.count("/") == 2]
        metrics[run] = {k: record["metrics"][k] for k in per_layer}
    assert metrics["a"] and metrics["a"] == metrics["b"]
    assert metrics["a"] != metrics["c"]  # control: another seed, another network
