"""A built wheel carries every config and its console scripts find them from any folder (plain install).

The fast tests build the wheel from a clean copy of the sources (a stale ``build/`` in the checkout could
hide a missing file), unpack it and run the entry points from an unrelated folder with only the unpacked
package on the path. The slow test does what a user does: a fresh venv, ``pip install`` the wheel,
``harness-train debug=fdr``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.facts.conf_dir import conf_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("harness", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(out)], check=True, capture_output=True, cwd=src)  # fmt: skip
    return next(out.glob("harness-*.whl"))


def _plain_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the unpacked wheel only: no checkout on the path
    return env


def test_checkout_uses_its_conf_folder() -> None:
    assert conf_dir() == ROOT / "conf"


def test_wheel_contains_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"harness/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert "harness/conf/train.yaml" in shipped
    assert shipped <= names, sorted(shipped - names)
    assert not any(n.startswith("conf/") for n in names)  # no top-level `conf` package in site-packages


def test_wheel_contains_the_optuna_sweeper_plugin(wheel: Path) -> None:
    """`hparams_search=optuna` needs Hydra to discover harness's sweeper in the `hydra_plugins` namespace."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hydra_plugins/harness_optuna_sweeper/harness_optuna_sweeper.py" in names, sorted(names)[:20]


def test_unpacked_wheel_finds_its_configs_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _plain_env(site)
    code = (
        "import harness.facts.conf_dir as c, harness.suggest.config as s; "
        "print(c.CONF_DIR); print(s.load_config().pick)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(site / "harness" / "conf"), "best"]
    job = subprocess.run([sys.executable, "-m", "harness.train", "--cfg", "job", "debug=fdr"], cwd=elsewhere,
                         env=env, capture_output=True, text=True)  # fmt: skip
    assert job.returncode == 0, job.stderr
    assert "fast_dev_run: true" in job.stdout


@pytest.mark.slow
def test_pip_installed_wheel_trains_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HARNESS_ROOT"] = str(tmp_path)
    run = subprocess.run([str(venv / "bin" / "harness-train"), "debug=fdr"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert str(venv) in subprocess.run([str(venv / "bin" / "python"), "-c", "import harness; print(harness.__file__)"],
                                       cwd=tmp_path, env=env, capture_output=True, text=True).stdout  # fmt: skip


def test_wheel_ships_the_dashboard_command(wheel: Path, tmp_path: Path) -> None:
    """`harness-dashboard` is a console script of the package itself (not scripts/), so a plain install has it."""
    archive = zipfile.ZipFile(wheel)
    entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
    assert "harness-dashboard = harness.dashboard:main" in archive.read(entry_points).decode()
    archive.extractall(tmp_path / "site")
    out = subprocess.run([sys.executable, "-m", "harness.dashboard", "--dry-run"], cwd=tmp_path,
                         env=_plain_env(tmp_path / "site"), capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0 and '"dry_run": true' in out.stdout, out.stderr[-2000:]
