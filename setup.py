"""Ships the top-level ``conf/`` folder inside the package as ``harness/conf``.

Why a setup.py next to pyproject.toml: mapping one folder onto a subpackage (``package_dir``) needs that
subpackage in the package list, and pyproject's ``packages.find`` cannot add a package it does not find
under the package's own folder. Everything else stays in pyproject.toml. A symlink ``harness/conf -> ../conf``
would do the same but breaks on Windows checkouts and in sdists; copying would give two sources of truth.
"""

from setuptools import find_packages, setup

setup(
    # hydra_plugins: the entry point of harness's Optuna sweeper (Hydra discovers plugins in that namespace)
    packages=[*find_packages(include=["harness*", "hydra_plugins*"]), "harness.conf"],
    package_dir={"harness.conf": "conf"},
)
