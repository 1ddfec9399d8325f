"""report.html: the whole comparison on one self-contained page.

Why self-contained (inline CSS, base64 PNGs, no JavaScript, no network): the page is mailed, attached to
issues and opened from cluster scratch space; it must look the same with no server and no internet.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.compare.headline import Headline, fmt
from harness.compare.load import Run, short_dirs
from harness.compare.plots import Plot
from harness.compare.stats import FAMILY, Effect, by_effect_size
from harness.facts import keys

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; background: #fff; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.headline { background: #f4f7fb; border-left: 4px solid #36c; padding: .6em 1em; font-size: 1.05em; }
.headline li { margin: .2em 0; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr.failed td { background: #fde8e8; } tr.running td { background: #fff6da; }
tr.beyond td { background: #e6f4e6; font-weight: 600; }
.status-failed { color: #b00; font-weight: 700; }
.missing { color: #aaa; } .skipped { color: #888; font-style: italic; }
figure { display: inline-block; margin: .5em; max-width: 1100px; } figcaption small { color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
"""
MISSING = '<span class="missing">missing</span>'
TOP_EFFECTS = 25  # rows of the main effects table per variant; effects.csv keeps every metric
RUN_METRICS = (keys.VAL_ACC, keys.TEST_ACC, keys.TRAIN_LOSS)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    return MISSING if value is None else _e(fmt(value))


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"{_e(fmt(ci[0]))} .. {_e(fmt(ci[1]))}"


FAMILY_RULE = (
    "<p>What is tested (the headline family): each probe's headline metrics (harness.facts.keys.HEADLINE: a few "
    "per layer) at the layers the edit touches and their neighbours in model order (every layer when the arms "
    "differ by no architecture edit), plus the task metrics (test accuracy and loss) and any <code>--headline</code> "
    "pattern. Benjamini-Hochberg runs within that family only; a metric is <em>beyond noise</em> when its q &le; "
    "alpha. Config facts (<code>model/params/*</code>) are reported, never tested. Every other metric is "
    "<em>exploratory</em>: effect size and 95% interval, never called beyond noise. Tests: Welch's t-test; counts "
    "of units (curve detectors, dissect detector and polysemantic units, dead units: k of N units per seed) a "
    "quasi-binomial likelihood-ratio F-test across seeds, so constant arms are no longer floored at the exact "
    "permutation p (0.1 at 3 vs 3 seeds). Unit-level shifts (<code>.../unit_median</code>): mean over seeds of the "
    "median over units of a per-unit table column, with a hierarchical bootstrap interval (seeds, then units "
    "within each seed); exploratory. Effect size = |difference| / pooled seed sd. Failed and running runs are "
    "excluded.</p>"
)


def runs_table(runs: Sequence[Run], labels: Mapping[str, str]) -> str:
    """Every run, failed ones marked as failed with their error, running ones as running."""
    head = "".join(f"<th>{_e(m)}</th>" for m in RUN_METRICS)
    common, short = short_dirs(runs)
    rows = []
    for run in runs:
        error = run.error or ""
        if run.probe_errors:
            error += ("; " if error else "") + "; ".join(f"probe {k}: {v}" for k, v in run.probe_errors.items())
        metrics = "".join(f"<td>{_num(run.metrics.get(m))}</td>" for m in RUN_METRICS)
        seed = "" if run.seed is None else run.seed
        wall = "" if run.wall_seconds is None else f"{run.wall_seconds:.0f}"
        rows.append(
            f'<tr class="{_e(run.status)}"><td class="text" title="{_e(run.run_dir)}">{_e(short[run.run_dir])}</td>'
            f'<td class="text status-{_e(run.status)}">{_e(run.status)}</td>'
            f'<td class="text">{_e(labels.get(run.variant, run.variant))}</td><td>{_e(seed)}</td><td>{wall}</td>'
            f'{metrics}<td class="text">{_e(error)}</td></tr>'
        )
    caption = f"<caption>run dirs relative to {_e(common)}</caption>" if common else ""
    return (
        f'<table class="runs">{caption}<tr><th class="text">run dir</th><th class="text">status</th>'
        f'<th class="text">variant</th><th>seed</th><th>wall s</th>{head}<th class="text">error</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _special(e: Effect) -> bool:
    """Rows that would crowd the top of the table without saying much: constant per side (|effect| = inf,
    e.g. model/params/total) or missing on one side."""
    return e.diff is None or (e.effect is not None and math.isinf(e.effect))


def special_table(effects: Sequence[Effect]) -> str:
    """The short section: constant-per-side metrics and metrics missing on one side."""
    rows = []
    for e in by_effect_size([e for e in effects if _special(e)]):
        base = MISSING if e.base_mean is None else _e(fmt(e.base_mean))
        var = MISSING if e.variant_mean is None else _e(fmt(e.variant_mean))
        note = e.note or ("constant within each side" if e.diff is not None else "")
        rows.append(f'<tr class=""><td class="text">{_e(e.metric)}</td><td>{base}</td><td>{var}</td>'
                    f"<td>{e.n_base}/{e.n_variant}</td><td>{_p(e.p)}</td>"
                    f'<td class="text">{_e(note)}</td></tr>')  # fmt: skip
    if not rows:
        return ""
    return (
        '<table class="constant"><tr><th class="text">metric</th><th>baseline</th><th>variant</th><th>seeds</th>'
        '<th>p</th><th class="text">note</th></tr>' + "".join(rows) + "</table>"
    )


def effects_section(effects: Sequence[Effect], top: int = TOP_EFFECTS) -> str:
    """The headline family (every test), unit-level shifts, constant/missing metrics in their own short table,
    then the top `top` exploratory effects by |effect size|."""
    family = [e for e in effects if e.role == FAMILY and e.diff is not None]
    units = [e for e in effects if e.test == "unit bootstrap"]
    rest = [e for e in effects if e not in family and e not in units]
    special = special_table(rest)
    main = [e for e in rest if not _special(e)]
    shown = by_effect_size(main)[:top]
    parts = []
    if family:
        parts.append(f"<h4>Headline family: {len(family)} metrics (BH within the family)</h4>" + effects_table(family))
    if units:
        parts.append(f"<h4>Unit-level shifts: {len(units)} (exploratory; hierarchical bootstrap intervals)</h4>")
        parts.append(effects_table(units))
    if special:
        parts.append("<h4>Constant within each side, or missing on one side</h4>" + special)
    parts.append(f"<h4>Exploratory: top {len(shown)} of {len(main)} effects by |effect size| "
                 f"(every metric: effects.csv)</h4>")  # fmt: skip
    parts.append(effects_table(shown))
    return "\n".join(parts)


def effects_table(effects: Sequence[Effect]) -> str:
    """One variant's metrics, largest |effect size| first; beyond-noise rows highlighted."""
    rows = []
    for e in by_effect_size(effects):
        flag = {True: "yes", False: "no", None: ""}[e.beyond_noise]
        base = MISSING if e.base_mean is None else f"{_e(fmt(e.base_mean))} ± {_e(fmt(e.base_sd))}"
        var = MISSING if e.variant_mean is None else f"{_e(fmt(e.variant_mean))} ± {_e(fmt(e.variant_sd))}"
        rows.append(
            f'<tr class="{"beyond" if e.beyond_noise else ""}"><td class="text">{_e(e.metric)}</td>'
            f"<td>{base}</td><td>{var}</td><td>{e.n_base}/{e.n_variant}</td><td>{_e(fmt(e.diff))}</td>"
            f"<td>{_e(fmt(e.effect, 2))}</td><td>{_ci(e.ci)}</td><td>{_p(e.p)}</td><td>{_p(e.q)}</td><td>{flag}</td>"
            f'<td class="text">{_e(e.role)}</td><td class="text">{_e(e.note)}</td></tr>'
        )
    return (
        '<table class="effects"><tr><th class="text">metric</th><th>baseline mean ± sd</th>'
        "<th>variant mean ± sd</th><th>seeds</th><th>difference</th><th>effect size</th><th>95% interval</th>"
        '<th>p</th><th>q (BH)</th><th>beyond noise</th><th class="text">role</th><th class="text">note</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def plots_section(plots: Sequence[Plot]) -> str:
    """Inline PNGs; a skipped plot says which metrics were missing."""
    parts = []
    for plot in plots:
        if plot.base64_png is None:
            parts.append(f'<p class="skipped">{_e(plot.spec.title)}: skipped ({_e(plot.skipped)})</p>')
        else:
            ymin = "" if plot.ymin is None else f' data-ymin="{plot.ymin:g}"'
            caption = f"<br><small>{_e(plot.spec.caption)}</small>" if plot.spec.caption else ""
            parts.append(
                f'<figure data-plot="{_e(plot.spec.name)}"{ymin}><img alt="{_e(plot.spec.title)}" '
                f'src="data:image/png;base64,{plot.base64_png}">'
                f"<figcaption>{_e(plot.spec.title)} <code>{_e(plot.spec.keys)}</code>{caption}</figcaption></figure>"
            )
    return "\n".join(parts)


def render(
    runs: Sequence[Run],
    labels: Mapping[str, str],
    baseline: str,
    effects: Mapping[str, Sequence[Effect]],
    headline: Headline,
    plots: Sequence[Plot],
) -> str:
    """The full HTML page."""
    lines = "".join(f"<li>{_e(line)}</li>" for line in headline.lines)
    sections = [
        f"<h1>harness-compare: {len(runs)} runs, baseline {_e(labels[baseline])}</h1>",
        f'<div class="headline"><ul>{lines}</ul></div>',
        "<h2>Runs</h2>",
        runs_table(runs, labels),
        "<h2>Plots</h2>",
        plots_section(plots),
        "<h2>Effects against the baseline</h2>",
        FAMILY_RULE,
    ]
    if not effects:
        sections.append('<p class="skipped">no variant other than the baseline</p>')
    for variant, rows in effects.items():
        sections.append(f"<h3>{_e(labels[variant])}</h3>")
        if variant != labels[variant]:
            sections.append(f'<p class="skipped">{_e(variant)}</p>')
        sections.append(effects_section(rows))
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>harness-compare</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(
    path: Path,
    runs: Sequence[Run],
    labels: Mapping[str, str],
    baseline: str,
    effects: Mapping[str, Sequence[Effect]],
    headline: Headline,
    plots: Sequence[Plot],
) -> Path:
    """Render (see `render`) and write the page."""
    path.write_text(render(runs, labels, baseline, effects, headline, plots), encoding="utf-8")
    return path
