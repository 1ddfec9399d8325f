"""The closing summary `harness-train` and `harness-probe` print when they finish.

Why: a run used to end on the Testing progress bar, leaving the researcher to dig the run folder, test
accuracy and probe results out of files. Like wandb's run summary lines, the last thing printed says where
the run is, how well it did and what the probes found, read from the run record (the one source of truth), so
the same text can be rebuilt later from `record.json` alone: ``print_summary(RunRecord.load(run_dir), run_dir)``.

Findings are chosen by fixed rules (not by magnitude across unrelated metrics), at most five, most useful first:
failed and skipped probes, curve detectors per layer against the random-init control, dead units, the class read-out,
representation change (CKA to the reference), concept detectors, and what added units became.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.facts import keys

MAX_FINDINGS = 5


def _per_layer(metrics: Mapping[str, Any], probe: str, metric: str) -> dict[str, float]:
    """layer -> value of `<probe>/<layer>/<metric>` (branch keys such as `mixed3b_5x5` left out), record order."""
    pattern = re.compile(rf"^{re.escape(probe)}/(?P<layer>[^/]+)/{re.escape(metric)}$")
    out = {}
    for key, value in metrics.items():
        match = pattern.match(key)
        if match and isinstance(value, int | float) and "_" not in match["layer"]:
            out[match["layer"]] = float(value)
    return out


def _curves(m: Mapping[str, Any]) -> str | None:
    found = _per_layer(m, keys.CURVES, keys.DETECTORS)
    if not found:
        return None
    control = _per_layer(m, keys.CURVES, keys.DETECTORS_RANDOM_INIT)
    parts = [f"{layer} {n:.0f}" + (f" ({control[layer]:.0f})" if layer in control else "")
             for layer, n in found.items()]  # fmt: skip
    best = max(found, key=lambda layer: found[layer] - control.get(layer, 0.0))
    ctl = " (random-init control)" if control else ""
    if found[best] - control.get(best, 0.0) <= 0:  # an argmax of ties at zero names a layer that found nothing
        return f"curve detectors per layer{ctl}: {', '.join(parts[:6])}; none above the control in any layer"
    return f"curve detectors per layer{ctl}: {', '.join(parts[:6])}; most above control: {best}"


def _dead(m: Mapping[str, Any]) -> str | None:
    dead = _per_layer(m, keys.ACTIVATIONS, keys.DEAD_FRACTION)
    if not dead:
        return None
    worst = max(dead, key=dead.__getitem__)
    mean = sum(dead.values()) / len(dead)
    return f"dead units: {dead[worst]:.0%} in {worst} (mean {mean:.0%} over {len(dead)} layers)"


def _linear(m: Mapping[str, Any]) -> str | None:
    acc = _per_layer(m, keys.LINEAR, keys.linear_acc("class"))
    if not acc:
        return None
    first, best = next(iter(acc)), max(acc, key=acc.__getitem__)
    return f"class read-out: {acc[first]:.2f} at {first} -> best {acc[best]:.2f} at {best}"


def _cka(m: Mapping[str, Any]) -> str | None:
    cka = _per_layer(m, keys.CKA, keys.CKA_TO_REFERENCE)
    if not cka:
        return None
    moved = min(cka, key=cka.__getitem__)
    return f"representation moved most in {moved} (CKA {cka[moved]:.2f} to the reference; 1 = unchanged)"


def _dissect(m: Mapping[str, Any]) -> str | None:
    units = _per_layer(m, keys.DISSECT, keys.DETECTOR_UNITS)
    if not units:
        return None
    best = max(units, key=units.__getitem__)
    concepts = _per_layer(m, keys.DISSECT, keys.UNIQUE_CONCEPTS).get(best)
    more = f", {concepts:.0f} concepts" if concepts is not None else ""
    return f"concept detectors: most in {best} ({units[best]:.0f} units{more})"


def _lineage(m: Mapping[str, Any]) -> str | None:
    pattern = re.compile(rf"^{keys.LINEAGE}/(?P<branch>[^/]+)/{keys.ADDED}/(?P<cat>[^/]+)$")
    per_branch: dict[str, list[str]] = {}
    for key, value in m.items():
        match = pattern.match(key)
        if match and not match["cat"].endswith("_frac") and isinstance(value, int | float) and value:
            per_branch.setdefault(match["branch"], []).append(f"{value:.0f} {match['cat']}")
    if not per_branch:
        return None
    return "added units became: " + "; ".join(f"{b}: {', '.join(c)}" for b, c in per_branch.items())


FINDINGS = (_curves, _dead, _linear, _cka, _dissect, _lineage)


def findings(metrics: Mapping[str, Any], failed: Sequence[str] = (), skipped: Mapping[str, str] | None = None,
             ) -> list[str]:  # fmt: skip
    """Up to five one-line probe findings from flat `<probe>/<layer>/<metric>` scalars; failed and skipped
    probes first (a finding that is absent because its probe never ran must say so)."""
    lines = [f"probe failed: {', '.join(failed)} (see record.json)"] if failed else []
    if skipped:
        reason = next(iter(skipped.values()))
        lines.append(f"probes skipped: {', '.join(skipped)} ({reason})")
    lines += [line for rule in FINDINGS if (line := rule(metrics)) is not None]
    return lines[:MAX_FINDINGS]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def _best_val(record: Mapping[str, Any]) -> str | None:
    rows = [r for r in record.get("epochs") or [] if isinstance(r.get(keys.VAL_ACC), int | float)]
    if not rows:
        value = (record.get("metrics") or {}).get(keys.VAL_ACC)
        return None if value is None else f"{value:.3f}"
    best = max(rows, key=lambda r: r[keys.VAL_ACC])
    total = ((record.get("config") or {}).get("trainer") or {}).get("max_epochs") or len(rows)
    return f"{best[keys.VAL_ACC]:.3f} (best, epoch {int(best['epoch']) + 1}/{total})"


def summary_rows(record: Mapping[str, Any], run_dir: str | Path) -> list[tuple[str, str]]:
    """(label, value) pairs of the summary, in print order; missing values are left out."""
    metrics = record.get("metrics") or {}
    test = (record.get("test") or {}).get(keys.TEST_ACC, metrics.get(keys.TEST_ACC))
    params = (record.get("model") or {}).get("params/total")
    rows = [("run dir", str(run_dir)), ("variant", str(record.get("variant") or "?"))]
    if record.get("seed") is not None:
        rows.append(("seed", str(record["seed"])))
    if isinstance(test, int | float):
        rows.append((keys.TEST_ACC, f"{test:.3f}"))
    if (val := _best_val(record)) is not None:
        rows.append((keys.VAL_ACC, val))
    if isinstance(params, int | float):
        rows.append(("parameters", f"{int(params):,}"))
    precision = ((record.get("config") or {}).get("trainer") or {}).get("precision")
    if precision:  # the resolved value (harness.run.precision); Lightning's own "Using bfloat16 AMP" line is silenced
        rows.append(("precision", str(precision)))
    rows.append(("wall time", _duration(record.get("wall_seconds"))))
    wandb = record.get("wandb") or {}
    if wandb.get("mode") == "offline" and wandb.get("dir"):
        rows.append(("wandb", f"wandb sync {wandb['dir']}"))
    return rows


def summary_findings(record: Mapping[str, Any]) -> list[str]:
    """The record's probe findings (see `findings`)."""
    probes = record.get("probes") or {}
    failed = sorted(name for name, entry in probes.items() if isinstance(entry, dict) and entry.get("error"))
    skipped = {name: str(entry["skipped"]) for name, entry in probes.items()
               if isinstance(entry, dict) and entry.get("skipped")}  # fmt: skip
    flat = {f"{name}/{k}": v for name, entry in probes.items() if isinstance(entry, dict)
            for k, v in (entry.get("scalars") or {}).items()}  # fmt: skip
    return findings(flat or record.get("metrics") or {}, failed, skipped)


def render(record: Mapping[str, Any], run_dir: str | Path, title: str = "harness-train"):
    """A rich Panel: key/value rows, then the findings as bullets."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in summary_rows(record, run_dir):
        grid.add_row(label, escape(value))
    found = summary_findings(record)
    if found:
        grid.add_row("probes", escape("\n".join(f"- {line}" for line in found)))
    status = str(record.get("status") or "?")
    return Panel(grid, title=f"{title}: {escape(status)}", title_align="left", expand=False)


def print_summary(record: Mapping[str, Any], run_dir: str | Path, title: str = "harness-train", console=None) -> None:
    """Print the closing summary to stdout (no colour codes when stdout is not a terminal)."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and files: run paths unfolded, long findings folded
    console.print(render(record, run_dir, title))
