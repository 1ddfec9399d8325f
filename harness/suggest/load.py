"""Read run records into the one flat view the rules work on (`RunSummary`), averaging seeds of a variant.

Why derive keys here: probes report dead units and curve detectors per *layer*, but edits act on a
*branch* (``mixed3b_5x5``). The per-unit tables the probes write next to the record
(``probes/activations_units.csv``, ``probes/curves_units.csv``) say which unit is dead or a curve
detector, and a mixed layer's units are its branches concatenated (1x1, 3x3, 5x5, pool_reduce), so the
loader adds the branch-level keys the rules need, named like the probes' own keys:

  activations/<branch>/dead_fraction, activations/<branch>/dead      (from activations_units.csv)
  curves/<branch>/detectors                                          (from curves_units.csv)
  curves/<layer>/orientation/<centre>   curve detectors per orientation bin, in the probe's own bins
                                        (:func:`harness.facts.keys.orientation_bin`: 8 bins centred on
                                        0, 45, ... 315 deg unless the run set probes.curves.coverage_bins)

Key names, table columns and bins come from :mod:`harness.facts.keys`, branch lists from
:mod:`harness.facts.edits` (both torch-free), so the loader counts exactly what the probes count.

Keys a record already has are never overwritten (a run probing branches directly keeps its values).

Which variant of a multirun (decision): every finished run is grouped by its variant; each metric is
averaged over that variant's seeds (over the seeds that have it). The variant suggested for is the one
with the best mean ``pick_metric`` (default ``val/acc``: improve on the best architecture so far, and
never select on test data); ``pick=latest`` takes the most recently started variant instead and
``variant=<name>`` names one. Ties go to the most recent.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.facts import keys
from harness.facts.edits import BRANCHES, CONCAT_BRANCHES
from harness.facts.errors import ConfigError
from harness.facts.family import Family, family
from harness.facts.overrides import channels as plan_channels
from harness.facts.overrides import flatten_widen
from harness.facts.runs import find_records, flatten, load_record, model_config


class NoRecords(Exception):
    """The path holds no usable run record."""


@dataclass
class RunSummary:
    """What the rules see: flat metrics (seed means for a multirun) plus the variant's architecture."""

    source: str
    variant: str
    seeds: list[Any]
    metrics: dict[str, float]
    model: dict[str, Any] = field(default_factory=dict)  # the run's resolved model config
    channels: dict[str, int] = field(default_factory=dict)  # layer / branch -> channels (edits included)
    classes: list[str] = field(default_factory=list)
    started: str = ""
    # Any model but InceptionV1 (record["model"], harness.models.consumers.growth_facts): the convs/linears
    # model.widen accepts (-> width), the one growing each probe layer, or why the model could not be traced.
    targets: dict[str, int] = field(default_factory=dict)
    grow_at: dict[str, str] = field(default_factory=dict)
    widen_error: str | None = None

    @property
    def family(self) -> Family:
        """What the run's model can do (InceptionV1; no model config at all, as in summaries built in code and old
        records, reads as the default model): :mod:`harness.facts.family`."""
        return family(self.model)

    @property
    def widen(self) -> dict[str, int]:
        """The run's widen edits by layer: dotted module paths flattened back from Hydra's nesting."""
        return flatten_widen(self.model.get("widen"))

    def grow_target(self, layer: str) -> str | None:
        """The widen target that grows probe layer `layer` on a non-Inception model (a widen target grows itself)."""
        return layer if layer in self.targets else self.grow_at.get(layer)

    @property
    def insert(self) -> list[str]:
        return list(self.model.get("insert") or [])

    def layers(self) -> list[str]:
        """Main layers (stem + mixed blocks, inserted ones included) in forward order."""
        return [name for name in self.channels if not is_branch(name)]


def is_branch(name: str) -> bool:
    return name.endswith(tuple(f"_{b}" for b in BRANCHES))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _unit_rows(run_dir: Path, record: dict[str, Any], probe: str) -> list[dict[str, str]]:
    rel = ((record.get("probes") or {}).get(probe) or {}).get("files", {}).get(keys.TABLE_FILE)
    if not rel or not (run_dir / rel).is_file():
        return []
    with open(run_dir / rel, newline="") as fh:
        return list(csv.DictReader(fh))


def _branch_of(layer: str, unit: int, channels: dict[str, int]) -> str | None:
    """The concat branch of a mixed layer holding output channel ``unit`` (None for other layers)."""
    start = 0
    for b in CONCAT_BRANCHES:
        width = channels.get(f"{layer}_{b}")
        if width is None:
            return None
        if unit < start + width:
            return f"{layer}_{b}"
        start += width
    return None


def coverage_bins(record: dict[str, Any]) -> int:
    """The run's curves `coverage_bins` (its recorded config), else the probe's default."""
    curves = ((record.get("config") or {}).get("probes") or {}).get(keys.CURVES) or {}
    return int(curves.get("coverage_bins") or keys.COVERAGE_BINS)


def derived_metrics(run_dir: Path, record: dict[str, Any], channels: dict[str, int]) -> dict[str, float]:
    """Branch-level dead fractions / detector counts and orientation bins from the per-unit tables."""
    out: dict[str, float] = {}
    dead: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in _unit_rows(run_dir, record, keys.ACTIVATIONS):
        branch = _branch_of(row[keys.LAYER], int(row[keys.UNIT]), channels)
        if branch:
            dead[branch][0] += row[keys.DEAD] == "True"
            dead[branch][1] += 1
    for branch, (n_dead, n) in dead.items():
        out[keys.key(keys.ACTIVATIONS, branch, keys.DEAD)] = float(n_dead)
        out[keys.key(keys.ACTIVATIONS, branch, keys.DEAD_FRACTION)] = n_dead / n
    detectors: dict[str, float] = defaultdict(float)
    n_bins = coverage_bins(record)
    for row in _unit_rows(run_dir, record, keys.CURVES):
        layer, is_det = row[keys.LAYER], row[keys.IS_CURVE_DETECTOR] == "True"
        branch = _branch_of(layer, int(row[keys.UNIT]), channels)
        if branch:
            detectors[keys.key(keys.CURVES, branch, keys.DETECTORS)] += is_det
        for i in range(n_bins):
            detectors.setdefault(orientation_key(layer, i, n_bins), 0.0)
        if is_det:
            detectors[orientation_key(layer, keys.orientation_bin(float(row[keys.PREFERRED_ORIENTATION]), n_bins),
                                      n_bins)] += 1  # fmt: skip
    out.update(detectors)
    return out


def orientation_key(layer: str, index: int, n_bins: int) -> str:
    """``curves/<layer>/orientation/<bin centre>``: curve detectors of ``layer`` preferring bin ``index``."""
    return keys.key(keys.CURVES, layer, f"{keys.ORIENTATION}/{keys.orientation_label(index, n_bins)}")


def load_run(record_path: Path) -> RunSummary:
    """One record as a summary: its flat metrics plus the keys derived from its per-unit tables."""
    record = load_record(record_path)
    model = model_config(record)
    chans = dict((record.get("model") or {}).get("channels") or {}) or plan_channels(model) or {}
    metrics = {k: v for k, v in ((k, _number(v)) for k, v in flatten(record).items()) if v is not None}
    for key, value in derived_metrics(record_path.parent, record, chans).items():
        metrics.setdefault(key, value)
    classes = list(record.get("classes") or (record.get("config") or {}).get("data", {}).get("classes") or [])
    facts = record.get("model") or {}
    return RunSummary(
        source=str(record_path.parent), variant=str(record.get("variant") or "base"), seeds=[record.get("seed")],
        metrics=metrics, model=model, channels=chans, classes=classes, started=str(record.get("started") or ""),
        targets=dict(facts.get("widen_targets") or {}), grow_at=dict(facts.get("grow_at") or {}),
        widen_error=facts.get("widen_error"),
    )  # fmt: skip


def average(runs: list[RunSummary]) -> RunSummary:
    """One summary for the seeds of a variant: each metric is the mean over the runs that have it."""
    values: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for key, value in run.metrics.items():
            values[key].append(value)
    latest = max(runs, key=lambda r: r.started)
    return RunSummary(
        source=str(Path(runs[0].source).parent) if len(runs) > 1 else runs[0].source,
        variant=latest.variant, seeds=[s for r in runs for s in r.seeds],
        metrics={k: sum(v) / len(v) for k, v in values.items()}, model=latest.model, channels=latest.channels,
        classes=latest.classes, started=latest.started, targets=latest.targets, grow_at=latest.grow_at,
        widen_error=latest.widen_error,
    )  # fmt: skip


def summarise(
    path: str | Path, pick: str = "best", pick_metric: str = keys.VAL_ACC, variant: str | None = None
) -> tuple[RunSummary, list[str]]:
    """The summary to suggest for, and notes on what was read (for the CLI's header)."""
    try:
        paths = find_records([path])
    except ConfigError as err:
        raise NoRecords(str(err)) from None
    runs, notes = [], []
    for p in paths:
        try:
            record = load_record(p)
        except (OSError, ValueError) as err:
            notes.append(f"unreadable record {p}: {err}")
            continue
        if record.get("status") not in (None, "finished"):
            notes.append(f"left out {p.parent} (status {record.get('status')})")
            continue
        runs.append(load_run(p))
    if not runs:
        raise NoRecords(f"no finished run record under {path} ({len(paths)} found)")
    groups: dict[str, list[RunSummary]] = defaultdict(list)
    for run in runs:
        groups[run.variant].append(run)
    summaries = {name: average(group) for name, group in groups.items()}
    if variant is not None:
        if variant not in summaries:
            raise NoRecords(f"variant {variant!r} not found; variants: {', '.join(sorted(summaries))}")
        chosen = summaries[variant]
    elif pick == "latest":
        chosen = max(summaries.values(), key=lambda s: s.started)
    elif pick == "best":
        chosen = max(summaries.values(), key=lambda s: (s.metrics.get(pick_metric, -math.inf), s.started))
    else:
        raise ValueError(f"pick must be 'best' or 'latest', got {pick!r}")
    if len(summaries) > 1:
        how = "named" if variant else f"{pick} by mean {pick_metric}" if pick == "best" else "most recent"
        notes.append(f"{len(summaries)} variants; chose {chosen.variant!r} ({how})")
    return chosen, notes
