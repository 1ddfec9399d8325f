"""`model=custom model._target_=pkg.module.Class`: a user's own module, loaded from a file the test writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.facts.errors import ConfigError
from harness.facts.overrides import flatten_widen
from harness.models.custom import instantiate_model
from harness.train import build_model

MYNET = textwrap.dedent(
    """
    from torch import nn


    class MyNet(nn.Module):
        def __init__(self, num_classes, width=8, depth=2):
            super().__init__()
            layers, c = [], 3
            for _ in range(depth):
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                c = width
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))


    class NoClasses(nn.Module):
        def __init__(self, width=8):
            super().__init__()
    """
)


@pytest.fixture
def mynet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "mynet.py").write_text(MYNET)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("mynet", None)
    return folder


def test_custom_model_builds_with_its_arguments(make_cfg, mynet_dir: Path) -> None:
    cfg = make_cfg("model=custom", "model._target_=mynet.MyNet", "+model.width=5", "+model.depth=3")
    net = build_model(cfg, num_classes=7, image_size=32)
    assert type(net).__name__ == "MyNet" and net.head.out_features == 7 and net.head.in_features == 5
    assert len(net.features) == 9


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["+model.batch_norm=true"], ["unexpected", "batch_norm", "depth, num_classes, width"]),
        (["model._target_=mynet.NoClasses"], ["unexpected", "num_classes", "must take num_classes"]),
        (["model._target_=mynet.Nope"], ["cannot import", "mynet.Nope", "PYTHONPATH"]),
        (["model._target_=nopkg.Net"], ["cannot import", "nopkg"]),
    ],
)
def test_bad_custom_model_is_one_line(make_cfg, mynet_dir: Path, overrides: list[str], words: list[str]) -> None:
    cfg = make_cfg("model=custom", "model._target_=mynet.MyNet", *overrides)
    with pytest.raises(ConfigError) as info:
        build_model(cfg, num_classes=3, image_size=32)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_missing_argument_and_missing_target_are_named() -> None:
    with pytest.raises(ConfigError, match="missing argument.*num_classes"):
        instantiate_model({"_target_": "torch.nn.Linear", "in_features": 3})
    with pytest.raises(ConfigError, match=r"model\._target_ is not set"):
        instantiate_model({"_target_": "???", "num_classes": 3})
    assert isinstance(instantiate_model({"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}),
                      torch.nn.Linear)  # fmt: skip


def test_weights_file_loads_into_a_custom_model(make_cfg, mynet_dir: Path, tmp_path: Path) -> None:
    from mynet import MyNet

    trained = MyNet(num_classes=4, width=6)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    cfg = make_cfg("model=custom", "model._target_=mynet.MyNet", "+model.width=6", f"model.weights={tmp_path}/w.pt")
    net = build_model(cfg, num_classes=4, image_size=32)
    assert torch.equal(net.features[0].weight, trained.features[0].weight)
    fresh = build_model(make_cfg("model=custom", "model._target_=mynet.MyNet", "+model.width=6"), 4, 32)
    assert not torch.equal(fresh.features[0].weight, trained.features[0].weight)  # negative control


def test_flatten_widen_restores_dotted_paths() -> None:
    assert flatten_widen({"layer2": {"0": {"conv1": 8}}, "features.3": 2}) == {"layer2.0.conv1": 8, "features.3": 2}
    assert flatten_widen(None) == {}


def test_harness_train_runs_a_custom_model_from_a_file(mynet_dir: Path, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{mynet_dir}", "HARNESS_ROOT": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-m", "harness.train", "debug=fdr", "model=custom", "probes=none",
                         "model._target_=mynet.MyNet", "+model.width=4", "data.train_size=64", "data.val_size=32",
                         "data.test_size=32"], cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "harness.train", "debug=fdr", "model=custom", "probes=none",
                          "model._target_=mynet.MyNet", "+model.batch_norm=true"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: model._target_=mynet.MyNet: unexpected argument")


def test_widen_a_custom_model_from_the_command_line_spelling(make_cfg, mynet_dir: Path) -> None:
    cfg = make_cfg("model=custom", "model._target_=mynet.MyNet", "+model.widen.features.0=3")
    net = build_model(cfg, num_classes=4, image_size=32)
    assert net.features[0].out_channels == 11 and net.features[3].in_channels == 11
    assert torch.equal(net.features[3].weight[:, 8:], torch.zeros_like(net.features[3].weight[:, 8:]))


def test_a_module_in_the_launch_folder_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_cfg) -> None:
    """`mynet.py` next to where `harness-train` is typed imports without PYTHONPATH (console scripts do not put the
    current folder on sys.path); elsewhere it is still "cannot import", with the hint (the control)."""
    folder = tmp_path / "launch"
    folder.mkdir()
    (folder / "herenet.py").write_text(MYNET)
    sys.modules.pop("herenet", None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(folder))])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="cannot import.*herenet.*current folder"):
        build_model(make_cfg("model=custom", "model._target_=herenet.MyNet"), num_classes=4, image_size=32)
    monkeypatch.chdir(folder)
    net = build_model(make_cfg("model=custom", "model._target_=herenet.MyNet", "+model.width=5"), 4, 32)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    sys.modules.pop("herenet", None)
