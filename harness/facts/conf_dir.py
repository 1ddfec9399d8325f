"""Where the shipped Hydra configs are, in a source checkout and in an installed package.

Why: the configs live in the repository's top-level ``conf/`` (the design card's layout), and the wheel
installs that folder as ``harness/conf`` (``setup.py`` maps the package ``harness.conf`` to ``conf/``).
A source checkout or an editable install has no ``harness/conf``: there the configs are the checkout's
``conf/`` next to the package. One absolute path, computed here, serves ``@hydra.main`` (console scripts and
``python -m`` resolve relative ``config_path`` differently), ``harness-suggest`` and the tests.
Users keep their own configs in their own folder and add it with ``--config-dir`` or
``hydra.searchpath=[file://...]``; it is searched together with this one.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # harness/, this file is harness/facts/conf_dir.py


def conf_dir() -> Path:
    """The folder holding train.yaml: ``harness/conf`` when installed, else the checkout's ``conf/``."""
    installed = _PACKAGE / "conf"
    return installed if (installed / "train.yaml").is_file() else _PACKAGE.parent / "conf"


CONF_DIR = str(conf_dir())
