"""Learning curves per variant for the report: val/acc and train/loss over epochs, mean with a band over seeds.

Why a separate reader: the flattened `Run` holds each run's final scalars only; the per-epoch rows live in
the same record.json (`epochs`, written by harness.run.records.RecordCallback), read here for finished runs.
Epochs are shown one-based, like the progress lines. The band spans min..max over seeds (with 2-5 seeds a
standard deviation band says little more and can cross impossible values such as accuracy > 1).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.compare.load import Run
from harness.compare.plots import Plot, PlotSpec
from harness.facts import keys
from harness.facts.runs import load_record

# (title, keys tried in order in each epoch row)
PANELS = ((keys.VAL_ACC, (keys.VAL_ACC,)), (keys.TRAIN_LOSS, (f"{keys.TRAIN_LOSS}_epoch", keys.TRAIN_LOSS)))
SPEC = PlotSpec("learning_curves", "Learning curves: val/acc and train/loss per epoch (mean, band = min..max over "
                "seeds)", "", "", "epochs[*].val/acc, epochs[*].train/loss in record.json")  # fmt: skip

Curves = dict[str, dict[str, dict[int, list[float]]]]  # variant -> panel -> epoch (one-based) -> seed values


def _epochs(run: Run) -> list[dict]:
    try:
        rows = load_record(run.run_dir).get("epochs") or []
    except (OSError, ValueError):  # missing, not JSON, or not a JSON object
        return []
    return [row for row in rows if isinstance(row, dict) and isinstance(row.get("epoch"), int | float)]


def collect_curves(runs: Sequence[Run], variants: Sequence[str]) -> Curves:
    """Per variant and panel: epoch -> finite values over the variant's finished runs."""
    out: Curves = {}
    for run in runs:
        if not run.finished or run.variant not in variants:
            continue
        for row in _epochs(run):
            for panel, names in PANELS:
                value = next((row[k] for k in names if isinstance(row.get(k), int | float)), None)
                if value is None or not math.isfinite(value):
                    continue
                per_epoch = out.setdefault(run.variant, {}).setdefault(panel, {})
                per_epoch.setdefault(int(row["epoch"]) + 1, []).append(float(value))
    return {v: out[v] for v in variants if v in out}


def draw_curves(curves: Curves, labels: Mapping[str, str], colors: Mapping[str, str]) -> Figure:
    """Two panels side by side; one line (mean) and one band (min..max over seeds) per variant."""
    fig = Figure(figsize=(11.0, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS))
    for ax, (panel, _) in zip(axes, PANELS):
        for variant, panels in curves.items():
            per_epoch = panels.get(panel)
            if not per_epoch:
                continue
            xs = sorted(per_epoch)
            mean = [sum(per_epoch[x]) / len(per_epoch[x]) for x in xs]
            label = labels.get(variant, variant)
            label = label if len(label) <= 40 else label[:37] + "..."
            seeds = max(len(per_epoch[x]) for x in xs)
            label = f"{label} ({seeds} seed{'s' * (seeds != 1)})"
            ax.plot(xs, mean, marker="o", ms=3, color=colors.get(variant), label=label)
            ax.fill_between(xs, [min(per_epoch[x]) for x in xs], [max(per_epoch[x]) for x in xs],
                            color=colors.get(variant), alpha=0.2, linewidth=0)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def learning_curves_plot(runs: Sequence[Run], labels: Mapping[str, str], variants: Sequence[str],
                         out_dir: Path) -> Plot:  # fmt: skip
    """The rendered plot (`out_dir/learning_curves.png`), or skipped when no finished run has epoch rows."""
    curves = collect_curves(runs, variants)
    if not curves:
        return Plot(SPEC, skipped="no per-epoch rows in the finished runs' records")
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}  # the same colours as harness.compare.plots
    buffer = io.BytesIO()
    draw_curves(curves, labels, colors).savefig(buffer, format="png")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{SPEC.name}.png"
    png.write_bytes(buffer.getvalue())
    return Plot(SPEC, png=png, base64_png=base64.b64encode(buffer.getvalue()).decode("ascii"))
