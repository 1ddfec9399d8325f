"""Interpretability probes: one per file, each a `Probe` returning a `ProbeResult` (see base.py)."""

from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.probe_set import ProbeSet

__all__ = ["Probe", "ProbeContext", "ProbeResult", "ProbeSet"]
