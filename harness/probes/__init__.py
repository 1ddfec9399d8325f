"""Interpretability probes: one per file, each a `Probe` returning a `ProbeResult` (see base.py).

The names below load lazily (PEP 562) so that torch-free readers of runs can import the probes' key names
and bins (:mod:`harness.probes.keys`) without importing torch through this file.
"""

from __future__ import annotations

from harness.lazy import lazy_exports

_EXPORTS = {"Probe": "base", "ProbeContext": "base", "ProbeResult": "base", "ProbeSet": "probe_set"}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
