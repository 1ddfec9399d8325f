"""A mandatory key left unset (`data=imagefolder` without `data.root`) is one `error:` line naming it, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.run.validate import check_missing


def test_missing_mandatory_key_is_named() -> None:
    from omegaconf import OmegaConf

    from harness.facts.errors import ConfigError

    cfg = OmegaConf.create({"data": {"root": "???", "image_size": 64}, "seed": 0})
    try:
        check_missing(cfg)
    except ConfigError as err:
        assert "data.root" in str(err) and "data.root=..." in str(err)
    else:
        raise AssertionError("no error for an unset data.root")
    check_missing(OmegaConf.create({"data": {"root": "/images"}}))  # set: no error


def test_imagefolder_without_root_is_one_line_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness.train", "data=imagefolder", "logger=none", f"paths.log_dir={tmp_path}",
           f"hydra.run.dir={tmp_path}/run"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "error: missing value for data.root (mandatory in the chosen config); set it, e.g. data.root=..."
    ]
    assert not (tmp_path / "run" / "record.json").exists()  # nothing written before the check
