"""One probing round as one wandb `log()` call: headline scalars, tables with image cells, histograms, captioned images.

Why one call: each `log()` advances wandb's `_step`; a round logged piecewise (a call per table and image) put
`test/acc` at a different `_step` in every variant. Why not every scalar in history: a run then had ~300 charts
of one point each. What stays in history is `HEADLINES` (:mod:`harness.run.wandb_layout`); every scalar of a probe
is in its `<probe>/per_layer` table, per-unit rows in `<probe>/<table>` (a picture per unit as an image cell
where the probe made one), composite pictures as `<probe>/image/<name>` (the record's `files["image/<name>"]`),
distributions as `<probe>/hist/<layer>/<column>`, timings in the summary under `perf/`; the run record keeps all.
Outcomes are read by attribute (name, result, seconds, error, skipped): see `harness.probes.runner.ProbeOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.facts import keys as K
from harness.run.wandb_layout import (
    HISTOGRAMS,
    PER_LAYER,
    PROBE_EPOCH,
    PROBE_ROUND,
    PROBE_SECONDS,
    is_headline,
    split_key,
)

IMAGE_COLUMN = "image"


def round_payload(outcomes: Sequence[Any], round_: int, epoch: int | None) -> tuple[dict[str, Any], dict[str, float]]:
    """(the history row of one probing round, summary-only values): see the module docstring."""
    import wandb

    row: dict[str, Any] = {PROBE_ROUND: round_}
    if epoch is not None:
        row[PROBE_EPOCH] = epoch
    summary: dict[str, float] = {}
    total = 0.0
    for outcome in outcomes:
        name, result = outcome.name, outcome.result
        total += outcome.seconds
        summary[f"perf/probes/{name}_seconds"] = round(outcome.seconds, 4)
        scalars = dict(result.scalars) if result is not None else {}
        if outcome.error is not None:
            scalars[K.FAILED] = 1.0
        if outcome.skipped is not None:
            scalars[K.SKIPPED] = 1.0
        row.update({f"{name}/{k}": float(v) for k, v in scalars.items() if is_headline(name, k)})
        if result is None:
            continue
        if result.scalars:
            row[f"{name}/{PER_LAYER}"] = per_layer_table(result.scalars)
        for table, rows in result.tables.items():
            if rows:
                row[f"{name}/{table}"] = unit_table(rows, result.unit_images)
        row.update(histograms(name, result.tables))
        for key, image in result.images.items():
            caption = f"{name} {key}" + (f", epoch {epoch}" if epoch is not None else "")
            row[f"{name}/image/{key}"] = wandb.Image(np.asarray(image, dtype=np.uint8), caption=caption)
    row[PROBE_SECONDS] = round(total, 4)
    return row, summary


def per_layer_table(scalars: Mapping[str, float]) -> Any:
    """Every scalar of one probe as a table: one row per layer, one column per metric (`concept/curve`, ...)."""
    import wandb

    by_layer: dict[str, dict[str, float]] = {}
    for key, value in scalars.items():
        layer, metric = split_key(key)
        by_layer.setdefault(layer, {})[metric or "value"] = float(value)
    columns = list(dict.fromkeys(m for values in by_layer.values() for m in values))
    data = [[layer, *(values.get(m) for m in columns)] for layer, values in by_layer.items()]
    return wandb.Table(columns=[K.LAYER, *columns], data=data)


def unit_table(rows: Sequence[Mapping[str, Any]], unit_images: Mapping[tuple[str, int], np.ndarray]) -> Any:
    """Per-unit rows as a wandb.Table; an `image` column holds each unit's picture when the probe made them."""
    import wandb

    columns = list(dict.fromkeys(k for row in rows for k in row))
    pictures = [unit_images.get((row.get(K.LAYER), row.get(K.UNIT))) for row in rows] if unit_images else []
    with_images = any(p is not None for p in pictures)
    data = []
    for row, picture in zip(rows, pictures or [None] * len(rows)):
        cells = [_cell(row.get(c)) for c in columns]
        if with_images:
            caption = f"{row.get(K.LAYER)}:{row.get(K.UNIT)}"
            cells.append(wandb.Image(np.asarray(picture, dtype=np.uint8), caption=caption) if picture is not None
                         else None)  # fmt: skip
        data.append(cells)
    return wandb.Table(columns=[*columns, IMAGE_COLUMN] if with_images else columns, data=data)


def histograms(probe: str, tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """`<probe>/hist/<layer>/<column>` histograms over a per-unit table's numeric column (`HISTOGRAMS`)."""
    import wandb

    out: dict[str, Any] = {}
    rows = tables.get(K.UNITS_TABLE) or []
    for column, keep in HISTOGRAMS.get(probe, ()):
        by_layer: dict[str, list[float]] = {}
        for row in rows:
            value = row.get(column)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                if keep is None or row.get(keep) in (True, "True", 1):
                    by_layer.setdefault(str(row.get(K.LAYER)), []).append(float(value))
        for layer, values in by_layer.items():
            out[f"{probe}/hist/{layer}/{column}"] = wandb.Histogram(values, num_bins=min(36, max(4, len(values))))
    return out


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
