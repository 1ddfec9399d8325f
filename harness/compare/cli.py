"""`harness-compare <multirun dir | run dirs...> [--out DIR] [--baseline VARIANT]`: compare runs from their records.

Why rich for the terminal: the headline and the largest effects should be readable right where the sweep
finished, without opening the HTML report; rich tables wrap long variant names instead of breaking columns.
User errors (bad path, unknown baseline) print one `error: ...` line and exit 2, never a traceback. Every text
from a record (errors, variant names, paths, metric names) is escaped: rich reads `[...]` as markup, and an
error such as `[/__w/pytorch/...]` would otherwise crash the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from harness.compare.headline import fmt
from harness.compare.load import short_dirs
from harness.compare.pipeline import Comparison, compare
from harness.compare.stats import ALPHA, FAMILY, by_effect_size
from harness.facts import keys
from harness.facts.errors import ConfigError

STATUS_STYLE = {"finished": "green", "failed": "bold red", "running": "yellow"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness-compare",
        description="Compare runs (record.json files) across variants and seeds: effects beyond seed noise, "
        "plots and a self-contained report.html.",
    )
    parser.add_argument("inputs", nargs="+", help="a multirun directory, or run directories / record.json files")
    parser.add_argument("--out", help="output folder (default: <dir>/compare for one multirun dir, else ./compare)")
    parser.add_argument("--baseline", help="baseline variant (full variant string or its short label)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="false discovery rate for Benjamini-Hochberg")
    parser.add_argument("--top", type=int, default=10, help="effects per variant shown in the terminal")
    parser.add_argument("--headline", action="append", default=[], metavar="METRIC",
                        help="add metrics (fnmatch pattern, e.g. 'spectra/mixed3b_*/stable_rank') to the headline "
                        "family that BH runs over; repeatable")  # fmt: skip
    return parser


def _runs_table(result: Comparison) -> Table:
    common, short = short_dirs(result.runs)
    table = Table(title=escape(f"runs in {common}") if common else "runs", show_lines=False)
    for name in ("run dir", "status", "variant", "seed", keys.VAL_ACC, keys.TEST_ACC, "error"):
        table.add_column(name, overflow="fold")
    for run in result.runs:
        style = STATUS_STYLE.get(run.status, "magenta")
        table.add_row(
            escape(short[run.run_dir]),
            f"[{style}]{escape(run.status)}[/]",
            escape(result.labels.get(run.variant, run.variant)),
            "" if run.seed is None else str(run.seed),
            fmt(run.metrics.get(keys.VAL_ACC)) or "missing",
            fmt(run.metrics.get(keys.TEST_ACC)) or "missing",
            escape((run.error or "")[:120]),
        )
    return table


def _effects_table(result: Comparison, variant: str, top: int) -> Table:
    table = Table(title=escape(f"top effects: {result.labels[variant]} vs {result.labels[result.baseline]}"))
    for name in ("metric", "baseline", "variant", "diff", "effect", "p", "q", "beyond noise", "role"):
        table.add_column(name, overflow="fold", justify="left" if name == "metric" else "right")
    compared = [e for e in by_effect_size(result.effects[variant]) if e.diff is not None]
    compared.sort(key=lambda e: e.role != FAMILY)  # the headline family first, each part by |effect size|
    for e in compared[:top]:
        flag = {True: "[bold green]yes[/]", False: "no", None: ""}[e.beyond_noise]
        table.add_row(
            escape(e.metric),
            f"{fmt(e.base_mean)} ± {fmt(e.base_sd) or '-'}",
            f"{fmt(e.variant_mean)} ± {fmt(e.variant_sd) or '-'}",
            fmt(e.diff),
            fmt(e.effect, 2),
            "" if e.p is None else f"{e.p:.2g}",
            "" if e.q is None else f"{e.q:.2g}",
            flag,
            e.role,
        )
    return table


def print_summary(result: Comparison, console: Console, top: int = 10, seconds: float | None = None) -> None:
    """Headline panel, runs table (failed runs marked), and the top effects of each variant."""
    console.print(Panel(escape("\n".join(result.headline.lines)), title="harness-compare headline", expand=False))
    console.print(_runs_table(result))
    for variant in result.effects:
        console.print(_effects_table(result, variant, top))
    skipped = [p.spec.name for p in result.plots if p.skipped]
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    files = "report.html, summary.csv, effects.csv, headline.txt/json, plots/"
    console.print(escape(f"wrote {result.out_dir}/ ({files}){took}"))
    if skipped:
        console.print(escape(f"plots skipped (metrics absent): {', '.join(skipped)}"))


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        result = compare(args.inputs, out=args.out, baseline=args.baseline, alpha=args.alpha,
                         headline_keys=args.headline)  # fmt: skip
    except ConfigError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a read-only multirun folder: say where, suggest --out
        print(f"error: cannot write the outputs ({err.strerror}: {err.filename}); choose a folder with --out",
              file=sys.stderr)  # fmt: skip
        return 2
    if result.skipped_inputs:  # one line, however many folders the glob caught
        first, more = result.skipped_inputs[0], len(result.skipped_inputs) - 1
        print(f"warning: skipped {first}{f' and {more} more folder(s)' if more else ''}: no record.json "
              f"at or below (not a harness run)", file=sys.stderr)  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)  # pipes and logs: do not fold metric names at 80 columns
    print_summary(result, console, top=args.top, seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
