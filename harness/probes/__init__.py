"""Interpretability probes: one per file, each a `Probe` returning a `ProbeResult` (see base.py).

The names below load lazily (PEP 562) so that torch-free readers of runs can import the probes' key names
and bins (:mod:`harness.probes.keys`) without importing torch through this file.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Probe": "base", "ProbeContext": "base", "ProbeResult": "base", "ProbeSet": "probe_set"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.probes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"harness.probes.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
