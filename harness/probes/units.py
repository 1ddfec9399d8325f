"""Unit selection shared by probes: other probes' per-unit verdicts, and "layer:index" unit lists.

Why a module of its own: lineage, ablation and featvis all read the curves/dissect verdicts (reusing
this round's results in ``ctx.results`` when the runner already has them, importing the probe lazily
otherwise) and all accept ``units: ["mixed3b:3", ...]`` settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from harness.facts.errors import ConfigError
from harness.probes.base import Probe, ProbeContext


def probe_units(ctx: ProbeContext, probe: str, layers: Sequence[str]) -> list[dict[str, Any]] | None:
    """Rows of probe ``probe``'s ``tables["units"]`` for ``layers``; None when that probe is not available.

    The probe is the `Probe` subclass named ``probe`` in ``harness.probes.<probe>``, imported only here (it
    may not be installed). A runner that already ran it may share its result as ``ctx.results[probe]``; it
    is used when it covers every requested layer or says it skipped it (``info["skipped_layers"]``: the curves
    probe leaves out layers whose receptive field cannot hold its stimuli), otherwise the probe runs here on
    ``layers``. Why the skipped ones count: rerunning the probe on them costs a whole census (minutes at 224 px)
    and would judge layers the round itself judged unfit.
    """
    shared = (getattr(ctx, "results", None) or {}).get(probe)
    if shared is not None:
        rows = [r for r in shared.tables.get("units", []) if r["layer"] in layers]
        skipped = set(shared.info.get("skipped_layers") or [])
        if set(layers) <= {r["layer"] for r in rows} | skipped:
            return rows
    try:
        module = importlib.import_module(f"harness.probes.{probe}")
    except ModuleNotFoundError as err:
        if err.name != f"harness.probes.{probe}":
            raise  # the probe exists but is broken: say so instead of silently skipping its verdicts
        return None
    found = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Probe) and c.name == probe]
    if not found:
        return None
    return list(found[0](layers=list(layers)).run(ctx).tables.get("units", []))


def parse_units(specs: Sequence[str] | None, channels: Mapping[str, int]) -> dict[str, list[int]]:
    """``["mixed3b:3", "mixed3b:7"]`` -> ``{"mixed3b": [3, 7]}``, checked against the model's layers."""
    out: dict[str, list[int]] = {}
    for spec in specs or []:
        layer, _, index = str(spec).rpartition(":")
        if not (channels.knows(layer) if hasattr(channels, "knows") else layer in channels):
            valid = ", ".join(channels)
            raise ConfigError(f"unit {spec!r}: unknown layer {layer!r}; write 'layer:index' with a layer in: {valid}")
        if not index.isdigit() or int(index) >= channels[layer]:
            raise ConfigError(f"unit {spec!r}: index must be an integer in 0..{channels[layer] - 1}")
        if int(index) not in out.setdefault(layer, []):
            out[layer].append(int(index))
    return out
