"""Oracle outputs: candidates.csv, signals.csv, a self-contained report.html, a rich table, a wandb table.

Why self-contained HTML (inline CSS, base64 PNGs, no JavaScript): the page is attached to notes and
mails and must open anywhere, like harness-compare's report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.oracle.candidates import Candidate
from harness.oracle.gains import Gain
from harness.oracle.scoring import SIGNALS_COLUMNS, SignalScore

log = logging.getLogger(__name__)

CANDIDATE_COLUMNS = ("candidate", "override", "params_added", "gain_val_loss", "gain_val_loss_low",
                     "gain_val_loss_high", "gain_val_acc", "gain_val_acc_low", "gain_val_acc_high",
                     "gain_train_loss", "gain_train_loss_low", "gain_train_loss_high")  # fmt: skip
EXTRA_COLUMNS = ("n_seeds", "max_logit_change", "loss_change_a")
# The gain each tier measures: tier 0 the training-loss drop on set B, tier 1 the fine-tuned val-loss drop.
TIER_GAIN = {0: "gain_train_loss", 1: "gain_val_loss"}
GAIN_LABEL = {"gain_train_loss": "tier 0: control train loss - candidate train loss on set B (95% bootstrap CI)",
              "gain_val_loss": "tier 1: control val loss - candidate val loss (95% CI over seeds)"}  # fmt: skip
SCORE_PREFIX = "score_"


def candidate_rows(
    candidates: Sequence[Candidate], gains: Mapping[str, Mapping[str, Gain]], signals: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    """One row per candidate with a gain, best oracle gain (val loss) first."""
    rows = []
    for cand in candidates:
        if cand.name not in gains:
            continue
        g = gains[cand.name]
        row: dict[str, Any] = {"candidate": cand.name, "override": cand.override, "params_added": cand.params_added}
        for metric in ("val_loss", "val_acc"):
            row.update({f"gain_{metric}": g[metric].mean, f"gain_{metric}_low": g[metric].low,
                        f"gain_{metric}_high": g[metric].high})  # fmt: skip
        row.update({f"{SCORE_PREFIX}{s}": scores.get(cand.name, math.nan) for s, scores in signals.items()})
        row.update({"n_seeds": g["val_loss"].n, "max_logit_change": cand.max_change})
        rows.append(row)
    return sorted(rows, key=lambda r: -r["gain_val_loss"] if math.isfinite(r["gain_val_loss"]) else math.inf)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return path


def candidate_columns(signals: Sequence[str]) -> list[str]:
    return [*CANDIDATE_COLUMNS, *(f"{SCORE_PREFIX}{s}" for s in signals), *EXTRA_COLUMNS]


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def gains_figure(rows: Sequence[Mapping[str, Any]], gain: str = "gain_val_loss") -> str:
    """Horizontal bars of a tier's gain with their 95% CIs, best on top."""
    rows = sorted((r for r in rows if has_gain(r, gain)), key=lambda r: -r[gain])
    fig = Figure(figsize=(7, 0.28 * len(rows) + 1.2))
    ax = fig.add_subplot()
    names = [r["candidate"] for r in rows][::-1]
    mean = [r[gain] for r in rows][::-1]
    low, high = [_num(r.get(f"{gain}_low")) for r in rows][::-1], [_num(r.get(f"{gain}_high")) for r in rows][::-1]
    err = [[m - lo if math.isfinite(lo) else 0 for m, lo in zip(mean, low)],
           [hi - m if math.isfinite(hi) else 0 for m, hi in zip(mean, high)]]  # fmt: skip
    ax.barh(names, mean, xerr=err, color="#4c72b0", ecolor="#333", capsize=2)
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel(GAIN_LABEL.get(gain, gain), fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _png(fig)


def scatter_figure(rows: Sequence[Mapping[str, Any]], signal: str, score: SignalScore) -> str:
    gain = TIER_GAIN.get(score.tier, "gain_val_loss")
    fig = Figure(figsize=(3.6, 3.0))
    ax = fig.add_subplot()
    pts = [(_num(r.get(f"{SCORE_PREFIX}{signal}")), _num(r.get(gain))) for r in rows]
    pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, color="#dd8452")
    ax.set_title(f"{signal}: rho {_cell(score.spearman)} (tier {score.tier})", fontsize=9)
    ax.set_xlabel("score", fontsize=8)
    ax.set_ylabel("gain (train loss, set B)" if score.tier == 0 else "gain (val loss)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(_cell(r.get(c))))}</td>" for c in columns) + "</tr>"
                   for r in rows)  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(path: Path, title: str, notes: Sequence[str], rows: Sequence[Mapping[str, Any]],
               scores: Sequence[SignalScore]) -> Path:  # fmt: skip
    """report.html: the signals table, each tier's gains with CI bars, one scatter per scored signal and tier (the
    silent ones listed in one line instead), the candidates table."""
    img = '<img alt="{}" src="data:image/png;base64,{}">'
    silent = [s for s in scores if not math.isfinite(s.spearman)]
    figs = "".join(img.format(html.escape(s.signal), scatter_figure(rows, s.signal, s))
                   for s in scores if rows and math.isfinite(s.spearman))  # fmt: skip
    if silent:
        names = ", ".join(sorted({f"{s.signal} (tier {s.tier})" for s in silent}))
        figs += (f"<p>Silent signals, no scatter: {html.escape(names)}. Each gave every candidate it scored the "
                 "same score (or had no probe to read), so rho is undefined (nan).</p>")  # fmt: skip
    tiers = sorted({s.tier for s in scores} | {t for t, g in TIER_GAIN.items() if any(has_gain(r, g) for r in rows)})
    gains_img = "".join(img.format(f"oracle gains, tier {t}", gains_figure(rows, TIER_GAIN[t]))
                        for t in tiers if any(has_gain(r, TIER_GAIN[t]) for r in rows))  # fmt: skip
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{margin:4px}}</style></head><body>
<h1>{html.escape(title)}</h1><ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
<h2>Signals against the oracle</h2>{_table([s.as_dict() for s in scores], SIGNALS_COLUMNS)}
<p>top1 / top3: the chance that the oracle's best candidate is among the signal's first 1 / 3 picks. Tied scores
share the credit (a tie of n candidates at the top gives each pick 1/n), so a silent signal scores what random
guessing scores: top1 = 1 / (number of candidates), e.g. 0.2 for five.</p>
<h2>Oracle gains</h2>{gains_img}<h2>Score vs gain, per signal</h2>{figs}
<h2>Candidates</h2>{_table(rows, list(rows[0]) if rows else CANDIDATE_COLUMNS)}</body></html>"""
    path.write_text(page)
    return path


def has_gain(row: Mapping[str, Any], gain: str) -> bool:
    """Whether a candidate row holds a finite value of this tier's gain column."""
    return math.isfinite(_num(row.get(gain)))


def print_tables(rows: Sequence[Mapping[str, Any]], scores: Sequence[SignalScore], gain: str = "gain_val_loss") -> None:
    """The oracle gains (of one tier) and the signals as rich tables on the terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    tier0 = gain == "gain_train_loss"
    title = "tier 0 gains (train loss on set B, 95% bootstrap CI over images)" if tier0 else \
        "oracle gains (95% CI over paired seeds)"  # fmt: skip
    gains = Table(title=title)
    for col in ("candidate", "params", "gain loss", "95% CI", "gain acc"):
        gains.add_column(col, justify="left" if col == "candidate" else "right", no_wrap=True)
    for r in sorted((r for r in rows if has_gain(r, gain)), key=lambda r: -r[gain]):
        ci = escape(f"[{_num(r.get(f'{gain}_low')):.3g}, {_num(r.get(f'{gain}_high')):.3g}]")  # not rich markup
        acc = _num(r.get("gain_val_acc"))
        gains.add_row(r["candidate"], str(r["params_added"]), f"{r[gain]:.3g}", ci,
                      f"{acc:.3g}" if math.isfinite(acc) else "")  # fmt: skip
    table = Table(title=f"signals: Spearman rho with the tier {0 if tier0 else 1} gain, bootstrap 95% CI")
    for col in ("signal", "rho", "low", "high", "top1", "top3", "regret", "n", "tier"):
        table.add_column(col, justify="left" if col == "signal" else "right", no_wrap=col == "signal")
    for s in scores:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in s.as_dict().values()))
    console = Console()
    console.print(gains)
    console.print(table)


def log_wandb(out: Path, rows: Sequence[Mapping[str, Any]], scores: Sequence[SignalScore], mode: str,
              name: str | None = None, group: str | None = None, config: Mapping[str, Any] | None = None) -> None:
    """Both tables to a wandb run (job_type oracle, named after its base run, group `oracle/<variant>`, the oracle's
    settings as config) in ``out``; a wandb failure only logs a warning."""
    try:
        import wandb

        run = wandb.init(project="harness", job_type="oracle", dir=str(out), mode=mode, name=name, group=group,
                         config=dict(config or {}))  # fmt: skip
        cols = list(rows[0]) if rows else list(CANDIDATE_COLUMNS)
        candidates = wandb.Table(columns=cols, data=[[_cell(r.get(c)) for c in cols] for r in rows])
        values = [list(map(_cell, s.as_dict().values())) for s in scores]
        signals = wandb.Table(columns=list(SIGNALS_COLUMNS), data=values)
        run.log({"oracle/candidates": candidates, "oracle/signals": signals})
        run.finish()
    except Exception as err:  # wandb must never cost the results already written
        log.warning("wandb table not logged: %s", err)
