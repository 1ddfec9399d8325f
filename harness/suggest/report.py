"""The guided-vs-random report: one self-contained HTML file (figures inline as base64 PNG).

Why self-contained: the report is mailed, attached to issues and opened years later; nothing may
depend on a server, a relative path or the run directories still existing.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.facts.stats import mean_sd
from harness.suggest.verdict import Verdict

ARMS = ("guided", "random")
COLOURS = {"guided": "#1f6fb4", "random": "#e07b1a", "base": "#777777"}


def _subplots(figsize: tuple[float, float]):
    """(figure, axes) on the Agg canvas, without pyplot: nothing global (backend, figure list) is switched,
    as in :mod:`harness.compare.plots`, so a caller's interactive matplotlib session is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _by(rows: list[dict[str, Any]], arm: str, rnd: int, key: str) -> list[float]:
    """Values of `key` for one arm and round, one per seed (round 0, the shared base model, is listed in both arms)."""
    return [float(r[key]) for r in rows if r["arm"] == arm and int(r["round"]) == rnd and r.get(key) not in ("", None)]


def figures(rows: list[dict[str, Any]], classes: Sequence[str], curve_classes: Sequence[str]) -> dict[str, str]:
    """name -> base64 PNG: accuracy per round, per-class final accuracy, parameters per round."""
    rounds = sorted({int(r["round"]) for r in rows})
    out = {}
    fig, ax = _subplots((6, 3.6))
    for i, arm in enumerate(ARMS):
        for seed in sorted({r["seed"] for r in rows}):
            ys = [next((float(r["test_acc"]) for r in rows if r["seed"] == seed and int(r["round"]) == k
                        and r["arm"] == arm), float("nan")) for k in rounds]  # fmt: skip
            ax.plot(rounds, ys, color=COLOURS[arm], alpha=0.25, lw=1)
        ms = [mean_sd(_by(rows, arm, k, "test_acc")) for k in rounds]
        xs = [k + (i - 0.5) * 0.06 for k in rounds]
        label = f"{arm} (mean +- sd over seeds)"
        ax.errorbar(
            xs, [m for m, _ in ms], yerr=[s for _, s in ms], color=COLOURS[arm], marker="o", capsize=4, label=label
        )
    ax.set(xlabel="round (0 = shared base model)", ylabel="test accuracy", xticks=rounds)
    ax.legend(fontsize=8)
    out["accuracy"] = _png(fig)

    last = rounds[-1]
    fig, ax = _subplots((max(6, 0.8 * len(classes)), 3.6))
    groups = [("guided", 0), ("guided", last), ("random", last)] if last > 0 else [("guided", 0)]
    width = 0.8 / len(groups)
    for j, (arm, rnd) in enumerate(groups):
        ms = [mean_sd(_by(rows, arm, rnd, f"test_acc/{c}") or [float("nan")]) for c in classes]
        xs = [i + (j - (len(groups) - 1) / 2) * width for i in range(len(classes))]
        label = "base (round 0)" if rnd == 0 else f"{arm} (round {rnd})"
        colour = COLOURS["base" if rnd == 0 else arm]
        ax.bar(xs, [m for m, _ in ms], width, yerr=[s for _, s in ms], color=colour, capsize=2, label=label)
    for i, c in enumerate(classes):
        if c in curve_classes:
            ax.axvspan(i - 0.45, i + 0.45, color="#fff2b3", zorder=0)
    ax.set_xticks(range(len(classes)), [f"{c}*" if c in curve_classes else c for c in classes], rotation=30)
    ax.set(ylabel="test accuracy", title="per class (* shaded = curve-dependent)")
    ax.legend(fontsize=8)
    out["per_class"] = _png(fig)

    fig, ax = _subplots((6, 3.2))
    for arm in ARMS:
        ax.plot(rounds, [mean_sd(_by(rows, arm, k, "params"))[0] for k in rounds], marker="o", color=COLOURS[arm],
                label=arm)  # fmt: skip
    ax.set(xlabel="round", ylabel="parameters (mean over seeds)", xticks=rounds)
    ax.legend(fontsize=8)
    out["params"] = _png(fig)
    return out


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(
    out_dir: Path,
    rows: list[dict[str, Any]],
    verdict: Verdict,
    classes: Sequence[str],
    curve_classes: Sequence[str],
    settings: dict[str, Any],
) -> Path:
    """Write ``report.html`` into out_dir and return its path."""
    figs = figures(rows, classes, curve_classes)
    rounds = sorted({int(r["round"]) for r in rows})
    gains = []
    for arm in ARMS:
        base, final = _by(rows, arm, 0, "test_acc"), _by(rows, arm, rounds[-1], "test_acc")
        gains.append(f"{arm}: round 0 {mean_sd(base)[0]:.4f} -> round {rounds[-1]} {mean_sd(final)[0]:.4f} "
                     f"(+- {mean_sd(final)[1]:.4f} sd)")  # fmt: skip
    curve_gap = []
    for arm in ARMS:
        cur = [v for c in classes if c in curve_classes for v in _by(rows, arm, rounds[-1], f"test_acc/{c}")]
        if cur:
            curve_gap.append(f"{arm}: mean curve-class test acc at round {rounds[-1]} = {mean_sd(cur)[0]:.4f}")
    ci = "n/a" if verdict.ci is None else f"{verdict.ci[0]:+.4f} .. {verdict.ci[1]:+.4f}"
    paired = "n/a" if verdict.paired_diff is None else f"{verdict.paired_diff:+.4f}"
    columns = ["arm", "seed", "round", "edit", "overrides", "rule", "params", "val_acc", "test_acc", "wall_s"]
    per_class = ["arm", "seed", "round", *[f"test_acc/{c}" for c in classes]]
    evidence = [r for r in rows if r.get("evidence")]
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;"
           "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}.verdict{font-size:1.2em;background:#eef4fb;"
           "padding:.6em;border-left:4px solid #1f6fb4}code{background:#f4f4f4}")  # fmt: skip
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>guided vs random</title><style>{css}</style>"
        "</head><body><h1>Guided vs random architecture edits</h1>",
        f"<p class='verdict'>{html.escape(verdict.text)}</p>",
        f"<p>difference guided - random (final test acc): {verdict.diff:+.4f}; 95% Welch CI {ci}; "
        f"Welch p {'n/a' if verdict.p is None else f'{verdict.p:.3g}'}; paired mean difference per seed {paired}; "
        f"{verdict.n_guided} vs {verdict.n_random} seeds.</p>",
        "<ul>" + "".join(f"<li>{html.escape(g)}</li>" for g in gains + curve_gap) + "</ul>",
        "<h2>Settings</h2><ul>"
        + "".join(f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in settings.items())
        + "</ul>",  # fmt: skip
        "<h2>Accuracy per round</h2><img src='data:image/png;base64," + figs["accuracy"] + "'>",
        "<h2>Per-class accuracy (final round)</h2><img src='data:image/png;base64," + figs["per_class"] + "'>",
        "<h2>Parameters</h2><img src='data:image/png;base64," + figs["params"] + "'>",
        "<h2>Runs</h2>" + _table(rows, columns),
        "<h2>Per-class test accuracy</h2>" + _table(rows, per_class),
        "<h2>Why the guided arm chose its edits</h2>" + _table(evidence, ["seed", "round", "edit", "evidence"]),
        "</body></html>",
    ]
    path = Path(out_dir) / "report.html"
    path.write_text("\n".join(parts))
    return path
