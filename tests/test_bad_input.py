"""Every bad input gets one clear line naming the valid choices, never a deep traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException

from harness.facts.errors import ConfigError
from harness.train import config_error, train

CASES = [
    # (overrides, words the message must contain)
    (["+model.widen.mixed3b_7x7=8"], ["mixed3b_7x7", "mixed3b_5x5", "conv2d2"]),
    (["+model.widen.mixed3b_5x5=1.5"], ["mixed3b_5x5", "integer"]),
    (["+model.widen.mixed3b_5x5=-24"], ["mixed3b_5x5", "24", ">= 1"]),  # pruning must leave one unit
    (["model.insert=[mixed9z]"], ["mixed9z", "mixed3b", "mixed4b"]),
    (["model=torchvision", "model.name=resnet999"], ["resnet999", "resnet18"]),
    (["data.classes=[line,blob]"], ["blob", "arc_high", "spiral"]),
    (["data.image_size=16"], ["16", "32"]),
]


@pytest.mark.parametrize(("overrides", "words"), CASES, ids=[c[0][-1] for c in CASES])
def test_bad_config_is_a_config_error(make_cfg, overrides, words) -> None:
    cfg = make_cfg("debug=fdr", *overrides)
    with pytest.raises(Exception) as info:
        train(cfg)
    err = config_error(info.value)
    assert isinstance(err, ConfigError), repr(info.value)
    message = str(err)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_and_empty_image_folders(make_cfg, tmp_path: Path) -> None:
    for root in (tmp_path / "nope", tmp_path / "empty", tmp_path / "no_images"):
        if root.name != "nope":
            root.mkdir()
        if root.name == "no_images":
            (root / "cat").mkdir()
        cfg = make_cfg("debug=fdr", "data=imagefolder", f"data.root={root}", tiny=False)
        with pytest.raises(Exception) as info:
            train(cfg)
        err = config_error(info.value)
        assert isinstance(err, ConfigError) and str(root) in str(err), repr(info.value)


def test_missing_cifar_says_how_to_get_it(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("debug=fdr", "data=cifar10", f"data.root={tmp_path}", tiny=False)
    with pytest.raises(Exception) as info:
        train(cfg)
    message = str(config_error(info.value))
    assert "data.download=true" in message and "cifar-10-batches-py" in message


@pytest.mark.parametrize("group", ["model=resnet", "data=imagenet"])
def test_unknown_group_option_lists_choices(make_cfg, group) -> None:
    with pytest.raises(HydraException) as info:
        make_cfg(group)
    assert "inception_v1_tiny" in str(info.value) or "world" in str(info.value)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness.train", "debug=fdr", "+model.widen.mixed3b_7x7=8",
           f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "mixed3b_5x5" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # the earlier result is kept: the run's record says what failed
    assert "mixed3b_7x7" in (tmp_path / "run" / "record.json").read_text()
