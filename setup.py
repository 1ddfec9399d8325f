"""Ships the top-level ``conf/`` folder inside the package as ``harness/conf``.

Why a setup.py next to pyproject.toml: mapping one folder onto a subpackage (``package_dir``) needs that
subpackage in the package list, and pyproject's ``packages.find`` cannot add a package it does not find
under the package's own folder. Everything else stays in pyproject.toml. A symlink ``harness/conf -> ../conf``
would do the same but breaks on Windows checkouts and in sdists; copying would give two sources of truth.
"""

from setuptools import find_namespace_packages, find_packages, setup

setup(
    # hydra_plugins: a namespace package (no __init__.py) holding the entry point of harness's Optuna sweeper;
    # Hydra discovers plugins there.
    packages=[
        *find_packages(include=["harness*"]),
        *find_namespace_packages(include=["hydra_plugins", "hydra_plugins.*"], exclude=["*.__pycache__"]),
        "harness.conf",
    ],
    package_dir={"harness.conf": "conf"},
)
