"""Run a set of probes on a model, isolate failures, respect a time budget, and publish the results.

Why one runner for training and for `harness-probe`: the same probes, keys and record layout
whether probes run from the Lightning callback during training or on a checkpoint afterwards, so a
comparison can mix both. A probe that raises, returns non-finite scalars or malformed tables/images,
or runs past `probing.probe_timeout_s` is recorded as `<probe>/failed=1` with the reason (its valid
results kept); what it left on the model (hooks, eval mode, grad mode) is undone, and the other probes
and the run continue. Publishing never raises either: a logger that fails costs a warning, not the run.
"""

from __future__ import annotations

import csv
import logging
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.probes.base import Probe, ProbeContext, ProbeResult
from harness.probes.memory import ActivationMemoryError
from harness.probes.timeout import ProbeTimeout, check_limit, time_limit

log = logging.getLogger(__name__)


@dataclass
class ProbeOutcome:
    """One probe's run: its result, or why there is none."""

    name: str
    result: ProbeResult | None = None
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Scalars with the probe prefix, plus bookkeeping keys (`failed`, `skipped`, `seconds`)."""
        out = {f"{self.name}/{k}": float(v) for k, v in (self.result.scalars if self.result else {}).items()}
        out[f"{self.name}/seconds"] = round(self.seconds, 4)
        if self.error is not None:
            out[f"{self.name}/failed"] = 1.0
        if self.skipped is not None:
            out[f"{self.name}/skipped"] = 1.0
        return out


def run_probes(
    probes: Mapping[str, Probe],
    ctx: ProbeContext,
    budget_s: float | None = None,
    cheap_only: bool = False,
    timeout_s: float | None = None,
) -> list[ProbeOutcome]:
    """Run each probe in order, each within `timeout_s` seconds (None: no limit); once `budget_s` is spent
    the remaining probes are skipped, not run."""
    check_limit(timeout_s)
    outcomes = []
    start = time.perf_counter()
    ctx.results.clear()
    for name, probe in sorted(probes.items(), key=lambda item: item[1].order):  # stable: config order within
        if cheap_only and not probe.cheap:
            continue
        outcome = ProbeOutcome(name)
        spent = time.perf_counter() - start
        if budget_s is not None and spent > budget_s:
            outcome.skipped = f"time budget of {budget_s:.0f} s spent ({spent:.0f} s)"
            log.warning("probe %s skipped: %s", name, outcome.skipped)
            outcomes.append(outcome)
            continue
        state = _ModelState([ctx.model, ctx.reference])
        t0 = time.perf_counter()
        trace = ""
        try:
            with time_limit(timeout_s):
                outcome.result = probe.run(ctx)
        except ProbeTimeout as err:  # raised inside the probe: its `finally` blocks have run
            outcome.error = str(err)
        except ActivationMemoryError as err:  # a limit the user can change: one line, no traceback
            outcome.error = str(err)
        except Exception as err:  # isolate: one broken probe must not cost the run or the other probes
            outcome.error = f"{type(err).__name__}: {err}"
            trace = "\n" + traceback.format_exc(limit=4)
        outcome.seconds = time.perf_counter() - t0
        if outcome.error is None:
            outcome.result, outcome.error = _validate(outcome.result)
        if outcome.error is None and (why := _nothing_to_measure(outcome.result)):
            outcome.skipped = why  # e.g. dissect on data without concept masks: one line, not a failure
            log.warning("probe %s skipped: %s", name, why)
        if outcome.error is None and timeout_s is not None and outcome.seconds > timeout_s:  # could not interrupt
            outcome.error = f"ran {outcome.seconds:.1f} s, past its time limit of {timeout_s:g} s"
            outcome.error += " (probing.probe_timeout_s)"
        if outcome.error is not None:
            log.error("probe %s failed: %s%s", name, outcome.error, trace)
            left = state.restore()
            if left:
                log.warning("probe %s left %d hooks on the model; removed them", name, left)
        if outcome.result is not None:
            ctx.results[name] = outcome.result
        outcomes.append(outcome)
    return outcomes


def _validate(result: Any) -> tuple[ProbeResult | None, str | None]:
    """(the usable part of a probe's result, why the rest was left out): non-finite scalars, bad tables/images."""
    if not isinstance(result, ProbeResult):
        return None, f"returned {type(result).__name__}, not a ProbeResult"
    problems = []
    bad = {k: v for k, v in result.scalars.items() if not _finite(v)}
    if bad:  # NaN would reach the record as null and the loggers as NaN: keep the finite ones only
        result.scalars = {k: v for k, v in result.scalars.items() if k not in bad}
        shown = ", ".join(f"{k}={v!r}" for k, v in list(bad.items())[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        problems.append(f"returned non-finite values for {shown}{more}")
    tables = [k for k, rows in result.tables.items() if not _rows(rows)]
    images = [k for k, image in result.images.items() if not _picture(image)]
    if tables:
        result.tables = {k: v for k, v in result.tables.items() if k not in tables}
        problems.append(f"returned tables that are not lists of dicts: {', '.join(tables)}")
    if images:
        result.images = {k: v for k, v in result.images.items() if k not in images}
        problems.append(f"returned images that are not HxWx3 arrays: {', '.join(images)}")
    return result, "; ".join(problems) or None


def _nothing_to_measure(result: ProbeResult | None) -> str | None:
    """The probe's own reason when it measured nothing (no scalars, ``info["skipped"]`` a sentence)."""
    why = result.info.get("skipped") if result is not None else None
    return why if isinstance(why, str) and not result.scalars else None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):  # strings, None, tensors of several values
        return False


def _rows(rows: Any) -> bool:
    return isinstance(rows, list) and all(isinstance(row, Mapping) for row in rows)


def _picture(image: Any) -> bool:
    try:
        array = np.asarray(image)
    except Exception:
        return False
    return array.ndim == 3 and array.shape[2] in (3, 4) and array.size > 0 and np.issubdtype(array.dtype, np.number)


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_HOOK_FLAGS = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


class _ModelState:
    """What a probe must leave as it found it (hooks, train/eval flags, grad mode), to put back after a failure.

    Why: `harness.models.hooks` cleans up in `finally`, but a probe may register hooks by hand, or its time may
    run out inside a cleanup; training goes on with this model, so the runner makes sure.
    """

    def __init__(self, models: Sequence[nn.Module | None]) -> None:
        self.models = [m for m in models if m is not None]
        self.grad = torch.is_grad_enabled()
        self.modes = {m: m.training for model in self.models for m in model.modules()}
        self.hooks = {
            (id(m), kind, key)
            for model in self.models
            for m in model.modules()
            for kind in _HOOKS
            for key in getattr(m, kind, {})
        }

    def restore(self) -> int:
        """Put grad mode, module modes and hooks back; returns how many leftover hooks were removed."""
        torch.set_grad_enabled(self.grad)
        for module, training in self.modes.items():
            module.training = training
        removed = 0
        for model in self.models:
            for m in model.modules():
                for kind in _HOOKS:
                    hooks = getattr(m, kind, {})
                    for key in [k for k in hooks if (id(m), kind, k) not in self.hooks]:
                        del hooks[key]
                        for flags in _HOOK_FLAGS:
                            getattr(m, flags, {}).pop(key, None)
                        removed += 1
        return removed


def _write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def save_outcomes(outcomes: Sequence[ProbeOutcome], run_dir: Path, suffix: str = "") -> None:
    """Tables as CSV and images as PNG under `<run_dir>/probes/`; paths kept on each outcome.

    A file that cannot be written marks its probe failed (with the reason) instead of stopping the run.
    """
    for outcome in outcomes:
        if outcome.result is None:
            continue
        try:
            _save(outcome, run_dir, suffix)
        except Exception as err:
            reason = f"could not save its tables/images: {type(err).__name__}: {err}"
            outcome.error = f"{outcome.error}; {reason}" if outcome.error else reason
            log.error("probe %s failed: %s", outcome.name, reason)


def _save(outcome: ProbeOutcome, run_dir: Path, suffix: str) -> None:
    from PIL import Image

    folder = run_dir / "probes"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in outcome.result.tables.items():
        if rows:
            path = folder / f"{outcome.name}_{name}{suffix}.csv"
            _write_table(path, rows)
            outcome.files[f"table/{name}"] = str(path.relative_to(run_dir))
    for name, image in outcome.result.images.items():
        path = folder / f"{outcome.name}_{name.replace('/', '_')}{suffix}.png"
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
        outcome.files[f"image/{name}"] = str(path.relative_to(run_dir))


def record_entry(outcome: ProbeOutcome, epoch: int | None) -> dict[str, Any]:
    """The run-record view of one outcome (JSON-safe; tables and images by file path)."""
    result = outcome.result
    return {
        "epoch": epoch,
        "seconds": round(outcome.seconds, 4),
        "scalars": dict(result.scalars) if result else {},
        "info": dict(result.info) if result else {},
        "files": dict(outcome.files),
        "error": outcome.error,
        "skipped": outcome.skipped,
    }


def record_outcomes(record: Any, outcomes: Sequence[ProbeOutcome], epoch: int | None, final: bool = True) -> None:
    """Write a probe round into a run record (:class:`harness.run.records.RunRecord`) and save it.

    Final results go under `probes/<name>` and into `metrics`; cheap rounds during training (`final=False`)
    append their scalars to `probe_history`. The one path for training's callback and `harness-probe`.
    """
    entries = {o.name: record_entry(o, epoch) for o in outcomes}
    if final:
        record.data["probes"].update(entries)
        for outcome in outcomes:
            record.data["metrics"].update(outcome.scalars())
    else:
        history = record.data.setdefault("probe_history", [])
        history.append({"epoch": epoch, **{name: e["scalars"] for name, e in entries.items()}})
    record.save()


def publish(outcomes: Sequence[ProbeOutcome], loggers: Sequence[Any], step: int, epoch: int | None = None) -> None:
    """Scalars to every logger; tables and images to loggers that take them. A logger with `log_probe_round`
    (wandb: headlines, tables with image cells, on the probe axis) gets the round whole. Never raises: the
    results are in the run record whatever a logger does."""
    scalars: dict[str, float] = {}
    for outcome in outcomes:
        scalars.update(outcome.scalars())
    for lg in loggers:
        if hasattr(lg, "log_probe_round"):
            try:
                lg.log_probe_round(outcomes, epoch=epoch)
            except Exception as err:
                log.warning("could not log the probe round to %s: %s: %s", type(lg).__name__, type(err).__name__, err)
            continue
        try:
            lg.log_metrics(scalars, step=step)
        except Exception as err:
            log.warning("could not log probe scalars to %s: %s: %s", type(lg).__name__, type(err).__name__, err)
        if not hasattr(lg, "log_table"):
            continue
        for outcome in outcomes:
            try:
                _publish_media(outcome, lg, step)
            except Exception as err:
                log.warning(
                    "could not log the tables/images of probe %s to %s: %s: %s",
                    outcome.name,
                    type(lg).__name__,
                    type(err).__name__,
                    err,
                )


def _publish_media(outcome: ProbeOutcome, lg: Any, step: int) -> None:
    result = outcome.result
    if result is None:
        return
    for name, rows in result.tables.items():
        if rows:
            columns = list(dict.fromkeys(k for row in rows for k in row))
            data = [[_cell(row.get(c)) for c in columns] for row in rows]
            lg.log_table(key=f"{outcome.name}/{name}", columns=columns, data=data, step=step)
    for name, image in result.images.items():
        lg.log_image(key=f"{outcome.name}/{name}", images=[np.asarray(image, dtype=np.uint8)], step=step)


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
