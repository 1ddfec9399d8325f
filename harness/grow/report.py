"""`python -m harness.grow.report <multirun dir> [--out DIR] [--baseline random]`: the grow loop's report.

Why its own report next to harness-compare's: the verdict (policy - baseline, Welch and paired) is
harness-compare's; what only the chains hold is *how* they got there: validation loss and accuracy per
round per policy (mean and sd over seeds, one thin line per seed), the final per-class test accuracy with
the curve classes marked, and every edit with the evidence its policy cited. One self-contained HTML file
(figures inline as base64 PNG), the kept parts of the retired guided-vs-random script's report.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.compare.load import load_run
from harness.compare.paired import paired_effects
from harness.facts import keys
from harness.facts.errors import ConfigError
from harness.facts.runs import find_records, load_record
from harness.facts.stats import describe

CURVE_MARK = "*"


def load_chains(inputs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every finished grow-loop chain record (one with ``grow.rounds``) at or below ``inputs``."""
    chains = []
    for path in find_records(inputs):
        record = load_record(path)
        if record.get("status") == "finished" and (record.get("grow") or {}).get("rounds"):
            chains.append({**record, "_path": str(path)})
    if not chains:
        raise ConfigError(f"no finished grow-loop record (experiment=grow_loop) below {', '.join(map(str, inputs))}")
    return chains


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(chains: list[dict[str, Any]], curve_classes: Sequence[str]) -> dict[str, str]:
    """name -> base64 PNG: val loss and val acc per round (mean +- sd over seeds), final per-class test accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(c["variant"] for c in chains))
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(policies)}
    out = {}
    for metric in (keys.VAL_LOSS, keys.VAL_ACC):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for i, policy in enumerate(policies):
            mine = [c for c in chains if c["variant"] == policy]
            rounds = sorted({r["round"] for c in mine for r in c["grow"]["rounds"]})
            for c in mine:
                ys = [r.get(metric) for r in c["grow"]["rounds"]]
                ax.plot([r["round"] for r in c["grow"]["rounds"]], ys, color=colours[policy], alpha=0.2, lw=1)
            per = [[r[metric] for c in mine for r in c["grow"]["rounds"] if r["round"] == k and metric in r]
                   for k in rounds]  # fmt: skip
            xs = [k + (i - len(policies) / 2) * 0.04 for k in rounds]
            sds = [describe(v)[2] or 0.0 for v in per]  # the sample sd over seeds (0 for one seed)
            ax.errorbar(xs, [statistics.fmean(v) for v in per], yerr=sds, color=colours[policy],
                        marker="o", capsize=3, label=f"{policy} ({len(mine)} seeds)")  # fmt: skip
        ax.set(xlabel="round (0 = the base model, shared by every policy of a seed)", ylabel=metric, xticks=rounds)
        ax.legend(fontsize=8)
        out[metric] = _png(fig)
        plt.close(fig)
    classes = list(chains[0].get("classes") or [])
    if classes:
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(classes)), 3.6))
        width = 0.8 / len(policies)
        for i, policy in enumerate(policies):
            mine = [c["test"] for c in chains if c["variant"] == policy]
            vals = [[test.get(keys.class_acc(keys.TEST, k)) for test in mine] for k in classes]
            vals = [[v for v in vs if v is not None] for vs in vals]
            sds = [describe(v)[2] or 0.0 for v in vals]
            ax.bar([j + i * width for j in range(len(classes))], [statistics.fmean(v) if v else 0 for v in vals],
                   width, yerr=sds, color=colours[policy], label=policy, capsize=2)  # fmt: skip
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(classes))])
        ax.set_xticklabels([f"{k}{CURVE_MARK}" if k in set(curve_classes) else k for k in classes], rotation=30)
        ax.set(ylabel="final test accuracy", title=f"per class ({CURVE_MARK} = curve class)")
        ax.legend(fontsize=8)
        out["classes"] = _png(fig)
        plt.close(fig)
    return out


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(inputs: Sequence[str | Path], out: Path, baseline: str = "random") -> Path:
    """report.html in ``out``: verdict (paired by seed), curves per round, per-class accuracy, edits."""
    from harness.suggest.config import load_config

    chains = load_chains(inputs)
    curve = list(load_config().curve_classes)
    runs = [load_run(Path(c["_path"])) for c in chains]
    rows = []
    for base in dict.fromkeys([baseline, "none"]):
        if any(r.variant == base for r in runs):
            rows += [[e.variant, e.baseline, e.metric, e.n_pairs, f"{e.mean_diff:+.4f}",
                      f"{e.low:+.4f} .. {e.high:+.4f}", f"{e.sd_diff:.4f}"]
                     for e in paired_effects(runs, base, (keys.TEST_ACC, keys.VAL_LOSS))]  # fmt: skip
    verdict = _table(["policy", "minus", "metric", "seeds", "mean diff", "95% CI", "sd of diffs"], rows)
    edits = [[c["variant"], c["seed"], e["round"], " ".join(e["overrides"]) or "(none)", e["params_added"],
              f"{e.get('max_logit_change', float('nan')):.1g}", "; ".join(e["evidence"])]
             for c in chains for e in c["grow"]["edits"]]  # fmt: skip
    wall = [c.get("wall_seconds") or 0 for c in chains]
    cpu = [c.get("cpu_seconds") or 0 for c in chains]
    figs = figures(chains, curve)
    img = "".join(f'<h3>{html.escape(k)}</h3><img src="data:image/png;base64,{v}">' for k, v in figs.items())
    settings = {k: v for k, v in chains[0]["config"]["grow"].items() if k not in ("probes", "policy")}
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>grow loop</title><style>
body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
table{{border-collapse:collapse}}</style></head><body><h1>Grow loop: {len(chains)} chains</h1>
<p>settings: {html.escape(json.dumps(settings))}; wall time per chain
{statistics.fmean(wall):.0f} s (CPU {statistics.fmean(cpu):.0f} s) on average.</p>
<h2>Verdict, paired by seed</h2>{verdict}<h2>Curves and classes</h2>{img}
<h2>Edits and the evidence each policy cited</h2>{
        _table(["policy", "seed", "round", "overrides", "params added", "max |logit change|", "evidence"], edits)
    }</body></html>"""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "grow_report.html"
    path.write_text(doc)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.grow.report", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="a grow-loop multirun directory (or chain run directories)")
    p.add_argument("--out", help="output folder (default: <first input>/compare)")
    p.add_argument("--baseline", default="random", help="policy the others are paired against (and 'none')")
    args = p.parse_args(argv)
    try:
        path = write_report(args.inputs, Path(args.out or Path(args.inputs[0]) / "compare"), args.baseline)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
