"""Entry point: `harness-suggest <run dir | multirun dir> [--json] [--top N] [key=value ...]`.

Why a thin CLI over `rules.suggest`: the guided-vs-random experiment and tests call the same functions;
this file only loads the thresholds (``conf/suggest.yaml`` + command-line ``key=value``), prints, and turns
bad input into a one-line error with exit code 2.

Text output: the first line is the command to run next (`harness-train <overrides>` of the best accepted
suggestion), the thing a user copies; for a model other than the default InceptionV1 it starts with the overrides
selecting that model (`harness-train model=torchvision model.name=resnet18 +model.widen.layer2.0.conv1=64`).
Then, best first: the complete override set for the next run (the run's edits composed with this one), its
evidence (each naming the metric keys and values it read) and the score; when the run already has widen/insert
edits, a second line says what the suggestion adds to them (`adds +model.widen.mixed3b_5x5=20 to the current
edits`). Then one line per skipped rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from omegaconf.errors import OmegaConfBaseException

from harness.facts.errors import ConfigError
from harness.facts.overrides import as_overrides, model_overrides
from harness.suggest.calibrate import weights_from_signals
from harness.suggest.config import load_with_weights
from harness.suggest.load import NoRecords, RunSummary, summarise
from harness.suggest.rules import Suggestion, suggest


def as_dict(run: RunSummary, notes: list[str], ranked: list[Suggestion], skipped: list) -> dict[str, Any]:
    """The --json document."""
    return {
        "source": run.source,
        "variant": run.variant,
        "seeds": run.seeds,
        "current_overrides": _current(run),
        "model_overrides": model_overrides(run.model),
        "notes": notes,
        "suggestions": [
            {
                "rank": i,
                "override": s.edit.incremental(),
                "next_run": s.next_run,
                "edit": {"kind": s.edit.kind, "target": s.edit.target, "amount": s.edit.amount},
                "score": round(s.score, 4),
                "rules": s.rules,
                "evidence": s.evidence,
                "metrics": s.used,
                "problem": s.problem,
            }
            for i, s in enumerate(ranked, 1)
        ],
        "skipped": [{"rule": name, "needs": needs} for name, needs in skipped],
    }


def _current(run: RunSummary) -> list[str]:
    return as_overrides(run.widen, run.insert)


def render(run: RunSummary, notes: list[str], ranked: list[Suggestion], skipped: list) -> str:
    """The text report."""
    seeds = f"{len(run.seeds)} seeds averaged" if len(run.seeds) > 1 else f"seed {run.seeds[0]}"
    lines = []
    top = next((s for s in ranked if not s.problem), None)
    if top is not None:
        lines.append(
            f"harness-train {' '.join([*model_overrides(run.model), *(top.next_run or [top.edit.incremental()])])}"
        )
    lines.append(f"suggestions for variant {run.variant!r} ({seeds}) from {run.source}")
    lines += [f"note: {n}" for n in notes]
    current = _current(run)
    if current:
        lines.append(f"current edits: {' '.join(current)}")
    if not ranked:
        lines.append("no suggestions: every rule that could run was silent")
    for i, s in enumerate(ranked, 1):
        to_run = " ".join(s.next_run or [s.edit.incremental()])
        lines.append(f"{i}. {to_run}   {'; '.join(s.evidence)}   (score {s.score:.2f})")
        if current:
            lines.append(f"   adds {s.edit.incremental()} to the current edits")
        if s.problem:
            lines.append(f"   not accepted by this harness version: {s.problem}")
    lines += [f"skipped: {name}: needs {', '.join(needs)}" for name, needs in skipped]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="harness-suggest", description="Probe results of run records -> ranked architecture edits."
    )
    parser.add_argument("path", help="a run dir (with record.json) or a multirun dir")
    parser.add_argument("overrides", nargs="*", help="threshold overrides key=value (see conf/suggest.yaml)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--top", type=int, default=None, help="print only the first N suggestions")
    parser.add_argument("--weights", help="rule weights calibrated from an oracle's signals.csv (max(rho, 0) per rule)"
                        " or a YAML/JSON rule -> weight map")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        cfg = load_with_weights(args.weights, args.overrides)
        notes_w = weights_from_signals(args.weights)[1] if args.weights else []
        run, notes = summarise(args.path, pick=cfg.pick, pick_metric=cfg.pick_metric, variant=cfg.variant)
        ranked, skipped = suggest(run, cfg)
        notes += notes_w + ([f"rule weights from {args.weights}: {dict(cfg.weights)}"] if args.weights else [])
    except (NoRecords, ValueError, OmegaConfBaseException, ConfigError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    ranked = ranked[: args.top] if args.top is not None else ranked
    if args.json:
        print(json.dumps(as_dict(run, notes, ranked, skipped), indent=1))
    else:
        print(render(run, notes, ranked, skipped))


if __name__ == "__main__":
    main()
