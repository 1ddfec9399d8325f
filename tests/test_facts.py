"""harness.facts stays torch-free: each of its modules, imported alone in a fresh interpreter, loads no torch.

Why: harness-compare and harness-suggest read run records through these modules; if one of them pulled in
torch (or Lightning), comparing a hundred runs would start in seconds instead of milliseconds, and the bottom
of the layer drawing would stand on the top.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import harness.facts

FACTS = sorted(m.name for m in pkgutil.iter_modules(harness.facts.__path__, "harness.facts."))
HEAVY = ("torch", "torchvision", "pytorch_lightning", "lightning", "timm", "wandb")


def test_the_facts_folder_is_found() -> None:
    assert {"harness.facts.errors", "harness.facts.runs", "harness.facts.keys"} <= set(FACTS)


@pytest.mark.parametrize("module", FACTS)
def test_fact_module_imports_no_torch(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
