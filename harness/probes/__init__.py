"""Interpretability probes: one per file, each a `Probe` returning a `ProbeResult` (see base.py).

The names probes report under live in :mod:`harness.facts.keys` (torch-free, for the readers of runs).
"""

from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.probe_set import ProbeSet

__all__ = ["Probe", "ProbeContext", "ProbeResult", "ProbeSet"]
