"""Lazy package exports (PEP 562): a package's public names import their module on first use.

Why: `harness.models` and `harness.probes` hold torch-free modules (`models.edits`, `probes.keys`) that
torch-free readers of runs (harness-compare, harness-suggest) import; importing a submodule runs its
package's `__init__` first, which therefore must not import torch eagerly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for a package whose public name N lives in submodule `exports[N]`.

    Usage (in a package's __init__): ``__getattr__, __dir__ = lazy_exports(__name__, {"X": "mod"}, globals())``
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def dir_() -> list[str]:
        return sorted([*namespace, *exports])

    return getattr_, dir_
