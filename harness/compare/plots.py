"""Per-layer and per-class plots of the finished runs, one line or bar group per variant (mean ± sd, seeds as dots).

Why matplotlib with the Agg canvas: PNGs render headless on a cluster node with no display, and the
bytes are embedded in the self-contained report. Figures are built as `Figure` objects (not pyplot),
so nothing global is switched and no figure outlives its function.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.compare.load import Run
from harness.facts import keys as pk
from harness.facts.stats import mean_sd

Series = dict[str, dict[str, list[float]]]  # variant -> x (layer/class) -> seed values


@dataclass(frozen=True)
class PlotSpec:
    """Which metrics feed one plot: `pattern` must capture the x axis value as group `x`.

    Usage: ``PlotSpec("curves", "Curve detectors per layer", r"^curves/(?P<x>[^/]+)/detectors$", "detectors")``
    """

    name: str
    title: str
    pattern: str
    ylabel: str
    keys: str  # the metric family, for people: shown when the plot is skipped
    kind: str = "line"  # "line" for ordered layers, "bar" for categories
    caption: str = ""  # what the reader needs to read the plot (shown under it in the report)


@dataclass
class Plot:
    """A rendered plot (png path + base64 bytes) or the reason it was skipped.

    Usage: ``for plot in make_plots(runs, labels, variants, out / "plots"): print(plot.png or plot.skipped)``
    """

    spec: PlotSpec
    png: Path | None = None
    base64_png: str | None = None
    skipped: str | None = None
    ymin: float | None = None  # lower end of the y axis as drawn (counts never go below 0)


LINEAGE_CAPTION = (
    "Each added unit gets the first category that applies: dead (never active on the probe set), duplicate "
    "(activations correlate with an old unit above lineage.duplicate_corr), curve_detector (passes the curves "
    "probe), other_detector (a dissect concept detector that is not a curve detector), and other: active and "
    "not a copy, but detecting neither curves nor any dissect concept (also every such unit when the curves or "
    "dissect probe did not run)."
)


def _class_spec(runs: Sequence[Run]) -> PlotSpec:
    split = "test" if any(re.match(r"^test/acc/.+", m) for r in runs for m in r.metrics) else "val"
    return PlotSpec("acc_per_class", f"{split} accuracy per class", rf"^{split}/acc/(?P<x>[^/]+)$", "accuracy",
                    f"{split}/acc/<class>", kind="bar")  # fmt: skip


def _per_layer(probe: str, metric: str, title: str, label: str) -> PlotSpec:
    """A plot of `<probe>/<layer>/<metric>` across layers (key names from harness.facts.keys)."""
    return PlotSpec(probe, title, rf"^{probe}/(?P<x>[^/]+)/{metric}$", label, pk.key(probe, "<layer>", metric))


def plot_specs(runs: Sequence[Run]) -> list[PlotSpec]:
    """The report's plots; accuracy per class uses test/acc/<class> when any run has it, else val/acc/<class>."""
    return [
        _per_layer(pk.CURVES, pk.DETECTORS, "Curve detectors per layer", "curve detectors"),
        _per_layer(pk.DISSECT, pk.UNIQUE_CONCEPTS, "Dissect: unique concepts per layer", "unique concepts"),
        _per_layer(pk.CKA, pk.CKA_TO_REFERENCE, "CKA to reference per layer", "linear CKA"),
        _class_spec(runs),
        PlotSpec(pk.LINEAGE, "Lineage: what the added units became",
                 rf"^{pk.LINEAGE}/(?P<x>[^/]+/{pk.ADDED}/[^/]+(?<!_frac))$", "units",
                 f"{pk.LINEAGE}/<branch>/{pk.ADDED}/<category>", kind="bar", caption=LINEAGE_CAPTION),
    ]  # fmt: skip


def collect(runs: Sequence[Run], pattern: str, variants: Sequence[str]) -> Series:
    """variant -> x -> finite values of the finished runs; x in order of first appearance."""
    regex = re.compile(pattern)
    series: Series = {}
    for variant in variants:
        for run in runs:
            if run.variant != variant or not run.finished:
                continue
            for metric, value in run.metrics.items():
                match = regex.match(metric)
                if match and value is not None and math.isfinite(value):
                    series.setdefault(variant, {}).setdefault(match["x"], []).append(value)
    return series


def draw(spec: PlotSpec, series: Series, labels: Mapping[str, str], colors: Mapping[str, str]) -> Figure:
    """One figure: per variant mean ± sd (line or grouped bars) with each seed as a dot; a variant keeps its colour."""
    xs = list(dict.fromkeys(x for per_x in series.values() for x in per_x))
    fig = Figure(figsize=(max(6.0, 0.6 * len(xs) + 3), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(len(series), 1)
    # Counts, accuracies and CKA cannot be negative: clip the lower error bar at 0 instead of drawing mean - sd.
    nonnegative = all(v >= 0 for per_x in series.values() for values in per_x.values() for v in values)
    for i, (variant, per_x) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * (width if spec.kind == "bar" else 0.06)
        pos = [j + offset for j, x in enumerate(xs) if x in per_x]
        stats = [mean_sd(per_x[x]) for x in xs if x in per_x]
        lower = [min(s, m) if nonnegative else s for m, s in stats]
        yerr = [lower, [s for _, s in stats]]
        label = labels.get(variant, variant)
        label = label if len(label) <= 48 else label[:45] + "..."
        if spec.kind == "bar":
            ax.bar(
                pos,
                [m for m, _ in stats],
                width=width,
                yerr=yerr,
                capsize=2,
                label=label,
                color=colors.get(variant),
            )
        else:
            ax.errorbar(
                pos,
                [m for m, _ in stats],
                yerr=yerr,
                marker="o",
                capsize=3,
                label=label,
                color=colors.get(variant),
            )
        dots = [(p, v) for p, x in zip(pos, [x for x in xs if x in per_x]) for v in per_x[x]]
        ax.scatter([p for p, _ in dots], [v for _, v in dots], s=10, color="black", alpha=0.5, zorder=3)
    if nonnegative:
        ax.set_ylim(bottom=0)
    ax.set_xticks(range(len(xs)), xs, rotation=30 if len(xs) > 4 else 0, ha="right" if len(xs) > 4 else "center")
    ax.set_ylabel(spec.ylabel)
    ax.set_title(spec.title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def make_plots(runs: Sequence[Run], labels: Mapping[str, str], variants: Sequence[str], out_dir: Path) -> list[Plot]:
    """Render every plot with data to `out_dir/<name>.png`; plots without data are returned as skipped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    plots = []
    for spec in plot_specs(runs):
        series = collect(runs, spec.pattern, variants)
        if not series:
            plots.append(Plot(spec, skipped=f"no {spec.keys} metrics in the finished runs"))
            continue
        buffer = io.BytesIO()
        fig = draw(spec, series, labels, colors)
        fig.savefig(buffer, format="png")
        png = out_dir / f"{spec.name}.png"
        png.write_bytes(buffer.getvalue())
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        plots.append(Plot(spec, png=png, base64_png=encoded, ymin=float(fig.axes[0].get_ylim()[0])))
    return plots
