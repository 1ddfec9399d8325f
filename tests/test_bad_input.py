"""Every bad input to harness-train gets one clear line naming the valid choices, never a deep traceback.

Two levels: `train(cfg)` raises a ConfigError (found through Hydra's wrapping by `config_error`), and a table of
cases through the real `harness-train` entry point (in-process, for speed) where each case must give exactly
one `error:` line naming the problem and the valid choices, a non-zero exit, no traceback on stderr, and no
partial or corrupt record (atomic writes).
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from PIL import Image

import harness.train
from harness.facts.errors import ConfigError
from harness.run.records import RunRecord
from harness.train import config_error, train

CONFIG_CASES = [
    # (overrides, words the message must contain)
    (["+model.widen.mixed3b_7x7=8"], ["mixed3b_7x7", "mixed3b_5x5", "conv2d2"]),
    (["+model.widen.mixed3b_5x5=1.5"], ["mixed3b_5x5", "integer"]),
    (["+model.widen.mixed3b_5x5=-24"], ["mixed3b_5x5", "24", ">= 1"]),  # pruning must leave one unit
    (["model.insert=[mixed9z]"], ["mixed9z", "mixed3b", "mixed4b"]),
    # a planted-base recipe naming an unknown layer (a typo in the recipe or on top of it)
    (["experiment=planted_mixed3b", "+model.widen.mixed3b_7x7=-2"], ["mixed3b_7x7", "conv2d2", "mixed3b_pool_reduce"]),
    (["model=torchvision", "model.name=resnet999"], ["resnet999", "resnet18"]),
    (["data.classes=[line,blob]"], ["blob", "arc_high", "spiral"]),
    (["data.image_size=16"], ["16", "32"]),
]


@pytest.mark.parametrize(("overrides", "words"), CONFIG_CASES, ids=[c[0][-1] for c in CONFIG_CASES])
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


# --- through the harness-train entry point, one table -------------------------------------------------------

FAST = ["debug=fdr", "probes=none"]
WORLD = ["data.train_size=32", "data.val_size=16", "data.test_size=16", "data.batch_size=16"]


class _Payload:
    """Stands for any object whose unpickling would run code."""


def _files(tmp: Path) -> dict[str, str]:
    """Bad files the table refers to as {name}."""
    (tmp / "empty.ckpt").write_bytes(b"")
    (tmp / "corrupt.ckpt").write_bytes(b"\x00garbage, not a zip archive")
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, tmp / "pickled.ckpt")
    torch.save({"state_dict": {"net.features.conv2d0.conv.weight": torch.zeros(3, 3, 7, 7)}}, tmp / "other_arch.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp / "not_lightning.ckpt")
    for cls in ("a", "b"):
        (tmp / "images" / cls).mkdir(parents=True)
        (tmp / "images" / cls / "fake.png").write_text("this is not a png")
    (tmp / "masked" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp / "masked" / "a" / "0.png")
    (tmp / "masked" / "masks").mkdir()  # concept masks announced, none given
    (tmp / "afile").write_text("a file, not a folder")
    return {k: str(tmp / v) for k, v in [("empty", "empty.ckpt"), ("corrupt", "corrupt.ckpt"),
                                          ("pickled", "pickled.ckpt"), ("other", "other_arch.ckpt"),
                                          ("notlight", "not_lightning.ckpt"), ("images", "images"),
                                          ("afile", "afile"), ("masked", "masked"), ("tmp", "")]}


CLI_CASES = [
    # (overrides, words the one error line must contain)
    (["modle.width=0.5"], ["unknown key", "model.width"]),
    (["trainer.max_epoch=3"], ["trainer.max_epoch", "max_epochs"]),
    (["probes=[curvez]"], ["curvez", "curves", "dissect"]),
    (["experiment=nope"], ["nope", "curve_widen"]),
    (["model=resnet"], ["resnet", "inception_v1_tiny"]),
    (["hydra/launcher=foo"], ["foo", "joblib", "slurm"]),
    (["seed=[1"], ["cannot parse"]),
    (["seed=abc"], ["seed", "integer"]),
    (["data.batch_size=0"], ["data.batch_size", ">= 1"]),
    (["data.batch_size=abc"], ["data.batch_size", "integer"]),
    (["data.train_size=-5"], ["data.train_size"]),
    (["data.seed=abc"], ["data.seed"]),
    (["trainer.max_epochs=abc"], ["trainer.max_epochs", "integer"]),
    (["module.optimizer.lr=-1"], ["module.optimizer.lr", "> 0"]),
    (["module.optimizer.weight_decay=-0.1"], ["weight_decay"]),
    (["probing.every_n_epochs=-1"], ["probing.every_n_epochs"]),
    (["logger=wandb", "logger.wandb.mode=bogus"], ["logger.wandb.mode", "offline", "disabled"]),
    (["logger=wandb", "logger.wandb.log_model=sometimes"], ["logger.wandb.log_model", "true, false or all"]),
    (["+model.widen.mixed3b_7x7=8"], ["mixed3b_7x7", "mixed3b_5x5"]),
    (["+model.widen.mixed3b_5x5=1.5"], ["mixed3b_5x5", "integer"]),
    (["model.widen_init=gradmux"], ["gradmux", "zero", "net2net", "gradmax", "tiny"]),
    (["model.new_lr_scale=0"], ["model.new_lr_scale", "> 0"]),
    (["model.widen_batches=0"], ["model.widen_batches", ">= 1"]),
    (["model=torchvision", "model.name=mobilenet_v3_small", "+model.widen.features.4.block.0.0=8",
      "+model.widen_init=gradmax", *WORLD],
     ["widen_init=gradmax", "features.4.block.0.0", "depthwise", "zero or net2net"]),
    (["model.insert=[mixed9z]"], ["mixed9z", "mixed3b"]),
    (["model.last_layer=mixed9"], ["mixed9", "mixed4b"]),
    (["model.width=0"], ["model.width", "> 0"]),
    (["model=torchvision", "model.name=resnet999"], ["resnet999", "resnet18"]),
    (["data.classes=[line,blob]"], ["blob", "arc_high"]),
    (["data.classes=[]"], ["class", "arc_high"]),
    (["data.image_size=16"], ["16", "32"]),
    (["probes=[activations]", "probing.layers=[mixed9]"], ["mixed9", "probing.layers", "mixed3b"]),
    (["ckpt_path={tmp}/missing.ckpt"], ["missing.ckpt", "does not exist"]),
    (["ckpt_path={empty}"], ["empty.ckpt", "empty"]),
    (["ckpt_path={corrupt}"], ["corrupt.ckpt", "not a torch file"]),
    (["ckpt_path={pickled}"], ["pickled.ckpt", "pickled code", "weights_only"]),
    (["ckpt_path={notlight}"], ["not a Lightning checkpoint"]),
    (["ckpt_path={other}"], ["does not fit", "other shapes", "conv2d0", "missing"]),
    (["resume={tmp}/no_such_run"], ["no_such_run", "no record.json"]),
    (["data=imagefolder", "data.root={images}"], ["fake.png", "not a readable image"]),
    (["data=imagefolder", "data.root={tmp}/nothing_here"], ["nothing_here", "not a folder"]),
    (["data=imagefolder", "data.root={masked}"], ["masks/ has no concept folders", "masks/<concept>/<class>/"]),
    (["paths.output_dir={afile}/run"], ["cannot write the run record", "afile"]),
]


def _main(monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["harness-train", *argv])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as info:
        harness.train.main()
    GlobalHydra.instance().clear()
    return info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, str]:
    return _files(tmp_path_factory.mktemp("bad_files"))


@pytest.mark.parametrize(("overrides", "words"), CLI_CASES, ids=[" ".join(c[0])[:40] for c in CLI_CASES])
def test_bad_input_gives_one_clean_line(monkeypatch, capsys, tmp_path, bad_files, overrides, words) -> None:
    run_dir = tmp_path / "run"
    # debug=fdr switches loggers off, so a logger case runs without it (it fails before training anyway)
    fast = [*WORLD, "probes=none"] if any(o.startswith("logger=") for o in overrides) else [*FAST, "logger=none"]
    if any(o.startswith("data=") for o in overrides):
        fast = [o for o in fast if o not in WORLD]
    argv = [*fast, *(o.format(**bad_files) for o in overrides), f"hydra.run.dir={run_dir}",
            f"paths.log_dir={tmp_path}"]
    code, err = _main(monkeypatch, capsys, argv)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    # no partial/corrupt record: either none, or a complete one that says it failed
    assert not list(tmp_path.rglob("*.tmp"))
    if (run_dir / "record.json").exists():
        record = json.loads((run_dir / "record.json").read_text())
        assert record["status"] == "failed" and record["error"]


def test_disk_full_on_record_write_keeps_the_previous_record(monkeypatch, capsys, tmp_path) -> None:
    """The record write fails at the first epoch end: the run fails with one line, the file on disk stays whole."""
    run_dir = tmp_path / "run"
    real_write = Path.write_text
    writes = {"n": 0}

    def full_disk(self: Path, data: str, *args, **kwargs):
        if self.name == "record.json.tmp":
            writes["n"] += 1
            if writes["n"] > 1:  # the first write (the config) succeeds, then the disk is full
                real_write(self, data[: len(data) // 2])  # a half-written temp file, as a full disk leaves
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    argv = [*FAST, *WORLD, "logger=none", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path}"]
    code, err = _main(monkeypatch, capsys, argv)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and len(lines) == 1 and "No space left on device" in lines[0], err[-2000:]
    record = RunRecord.load(run_dir)  # still valid JSON: the version before the disk filled up
    assert record["status"] == "running" and record["config"]["seed"] == 0
    assert not (run_dir / "record.json.tmp").exists()


def test_case_count() -> None:
    assert len(CLI_CASES) >= 25
