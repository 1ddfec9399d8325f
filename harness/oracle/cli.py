"""Entry points: `harness-oracle BASE_RUN_DIR [...]` and `harness-signals BASE_RUN_DIR ORACLE_DIR [--out DIR]`.

harness-oracle: enumerate equal-cost candidates on the base run (``candidates``), check each is
function-preserving at step 0, train every (candidate, seed) and the no-edit control for ``--steps`` more
steps as one harness-train multirun (``launch``), turn the records into paired gains (``gains``), then score
every signal (``signals``, ``scoring``) and write the outputs (``report``). harness-signals redoes only the
scoring from an existing oracle folder (its ``oracle.json`` and ``jobs/``).

Bad input -> one ``error:`` line, exit code 2; results already written are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.facts.errors import ConfigError
from harness.facts.keys import GROWTH_SCORES
from harness.oracle import report
from harness.oracle.candidates import Candidate, check_preserving, enumerate_candidates
from harness.oracle.data import check_images
from harness.oracle.first_order import GRADMAX_PER_UNIT, TINY, first_order_signals
from harness.oracle.gains import gains as oracle_gains
from harness.oracle.gains import paired_diffs
from harness.oracle.launch import JOBS_DIR, command, read_jobs, run_jobs, write_group
from harness.oracle.scoring import BOOTSTRAP_REPS, SIGNALS_COLUMNS, SignalScore, score_signal, spearman
from harness.oracle.signals import all_signals
from harness.oracle.tier0 import AMPLITUDE, AMPLITUDES, SET_A, SET_B, check_amplitude
from harness.run.builders import CONF_DIR
from harness.run.records import RECORD_NAME, RunRecord
from harness.suggest.config import load_config
from harness.suggest.load import load_run

log = logging.getLogger("harness.oracle")

DEFAULT_SEEDS = 3
# What ranks tier 1's shortlist (--top K): tier 0's gain, or a first-order signal computed on set A. Why a signal:
# on world_hard's planted stem and conv2d2 bases tier 0's top 5 held the plant on 3 of 6 while tiny's top 6 held it
# on 6 of 6, and tier 1 ranked the plant first whenever it was fine-tuned
# (docs/results/2026-12-06-planted-world-hard.md).
TOP_BY = ("tier0", TINY, GRADMAX_PER_UNIT)
DEFAULT_STEPS = 100
# Continued jobs fine-tune at 0.1x the base run's learning rate. Why (README, "Where to grow"): a fresh optimizer
# at the base's peak LR (0.004) made the control itself worse than the base (val loss 0.074 vs 0.066 on the
# curvature base) and its noise swamped the gains; at 0.1x the paired CI half-widths fell ~9x (median 0.0098 ->
# 0.0011 on 5 candidates x 3 seeds) while the gains' spread fell ~5x: better resolved, not yet well resolved.
DEFAULT_LR_SCALE = 0.1
ORACLE_JSON = "oracle.json"
PROBE_RUN = "probe_run"
TIERS = (0, 1)


def base_run(run_dir: str | Path) -> tuple[dict[str, Any], str]:
    """(the base run's record, the checkpoint to grow from: best, else last)."""
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a harness-train run directory (no {RECORD_NAME})")
    record = RunRecord.load(path)
    if record.get("status") != "finished":
        raise ConfigError(f"base run {run_dir} has status {record.get('status')!r}; it must be finished")
    ckpts = record.get("checkpoints") or {}
    found = [p for p in (ckpts.get("best"), ckpts.get("last"), str(Path(run_dir) / "checkpoints" / "last.ckpt")) if p]
    ckpt = next((p for p in found if Path(p).is_file()), None)
    if ckpt is None:
        raise ConfigError(f"base run {run_dir} has no checkpoint file (looked for {', '.join(found)})")
    return record, ckpt


def _steps_of(record: dict[str, Any]) -> int:
    epochs = record.get("epochs") or []
    return int(max((row.get("step") or 0 for row in epochs), default=0))


def check_tier_args(args: argparse.Namespace) -> None:
    """The tier flags' bad values, each one line (before anything is computed)."""
    if args.tier not in TIERS:
        raise ConfigError(f"--tier must be 0 (deterministic: add, line-search, measure) or 1 (fine-tune), "
                          f"got {args.tier}")  # fmt: skip
    check_amplitude(args.amplitude)
    if args.top is not None and args.top <= 0:
        raise ConfigError(f"--top must be >= 1 (the tier-0 top K candidates tier 1 fine-tunes), got {args.top}")
    if args.top is not None and args.tier != 1:
        raise ConfigError("--top picks tier 1's candidates from tier 0's ranking; use it with --tier 1")
    if args.top_by not in TOP_BY:
        raise ConfigError(f"--top-by must be one of {', '.join(TOP_BY)} (what ranks tier 1's --top K shortlist), "
                          f"got {args.top_by!r}")  # fmt: skip
    if args.top_by != TOP_BY[0] and args.top is None:
        raise ConfigError("--top-by ranks the --top K shortlist; give --top K with it")


# (candidate rows, per-image gains on B, signal scores, notes, first-order signals computed on set A)
Tier0 = tuple[list[dict[str, Any]], dict[str, Any], list[SignalScore], list[str], dict[str, dict[str, float]]]


def run_tier0(args: argparse.Namespace, candidates: list[Candidate] | None = None, out: Path | None = None,
              write: bool = True) -> Tier0:  # fmt: skip
    """Tier 0 on every candidate (or ``candidates``): gains, signals scored against them, outputs written.

    Returns (candidate rows, per-image gains by candidate, signal scores, notes) so tier 1 can reuse them.
    """
    from harness.models.build import load_net
    from harness.oracle import tier0

    record, ckpt = base_run(args.base)
    out = out or Path(args.out or Path(args.base) / "oracle")
    only = [c for c in (args.candidates or "").split(",") if c] or None
    config, n_classes = record["config"], len(record.get("classes") or [])
    started = time.perf_counter()
    if candidates is None:
        candidates, budget = enumerate_candidates(config["model"], n_classes, args.budget, False, only)
    else:
        budget = args.budget
    sets = tier0.fixed_sets(config["data"], args.set_a, args.set_b, args.signal_seed)
    net, _ = load_net(ckpt)
    image_size = int(sets.b_images.shape[-1])
    rows_by_name, diffs = tier0.tier0(config["model"], ckpt, net, candidates, sets, n_classes, image_size,
                                      args.signal_seed, args.amplitude)  # fmt: skip
    wall = round(time.perf_counter() - started, 1)
    first_order = first_order_signals(net, sets.a, candidates, image_size)  # on set A, as tier 0's line search
    notes = [f"tier 0: base {args.base} ({ckpt}), budget {budget} parameters, {len(rows_by_name)} candidates grown "
             f"with {tier0.INIT} on set A ({args.set_a} training images, amplitude {args.amplitude}), gain measured "
             f"on set B ({args.set_b} disjoint training images), batch norm in eval mode, paired bootstrap over B's "
             f"images; {wall} s"]  # fmt: skip
    if len(diffs) >= 2:
        first, second, (d, lo, hi) = tier0.winner_resolved(diffs, args.signal_seed)
        verdict = "resolved" if lo > 0 else "not resolved"
        notes.append(f"tier 0 winner {first}, {verdict} against the runner-up {second}: difference {d:.3g} "
                     f"[{lo:.3g}, {hi:.3g}]")  # fmt: skip
    reliable = tier0.reliability(diffs, seed=args.signal_seed)
    if math.isfinite(reliable):
        notes.append(f"tier 0's ranking: split-half reliability {reliable:.2f} ({tier0.SPLITS} random halvings of set "
                     f"B, Spearman-Brown), so a signal's rho with tier 0 can reach about "
                     f"{math.sqrt(max(reliable, 0.0)):.2f}")  # fmt: skip
    rows = []
    for cand in candidates:
        if cand.name in rows_by_name:
            rows.append({"candidate": cand.name, "override": cand.override, "params_added": cand.params_added,
                         **rows_by_name[cand.name]})  # fmt: skip
    scores: list[SignalScore] = []
    if write:
        out.mkdir(parents=True, exist_ok=True)
        signals, signal_notes = _signals(args, ckpt, out, candidates, first_order)
        notes += signal_notes
        scores = [score_signal(name, s, diffs, args.bootstrap, args.signal_seed, tier=0) for name, s in signals.items()]
        for row in rows:
            row.update({f"{report.SCORE_PREFIX}{s}": v.get(row["candidate"], math.nan) for s, v in signals.items()})
        meta = {"tier": 0, "base": str(Path(args.base).resolve()), "ckpt": ckpt, "budget": budget,
                "set_a": args.set_a, "set_b": args.set_b, "init": tier0.INIT, "amplitude": args.amplitude,
                "wall_s": wall, "reliability": reliable if math.isfinite(reliable) else None,
                "candidates": [c.as_dict() for c in candidates]}  # fmt: skip
        (out / ORACLE_JSON).write_text(json.dumps(meta, indent=1))
        title = f"Where to grow (tier 0): {args.base}"
        _write_outputs(out, title, notes, rows, scores, list(signals), "gain_train_loss")
    return rows, diffs, scores, notes, first_order


def _signals(args: argparse.Namespace, ckpt: str, out: Path, candidates: list[Candidate],
             first_order: dict[str, dict[str, float]]) -> tuple[dict, list[str]]:  # fmt: skip
    run = load_run(Path(args.base) / RECORD_NAME)
    extra, notes = probe_run(ckpt, run.metrics, out, out)
    run.metrics.update({k: float(v) for k, v in extra.items() if isinstance(v, int | float) and v is not None})
    signals, signal_notes = all_signals(run, load_config(), candidates, args.signal_seed, first_order)
    return signals, [*notes, *signal_notes]


def _write_outputs(out: Path, title: str, notes: list[str], rows: list[dict[str, Any]], scores: list[SignalScore],
                   signals: list[str], gain: str) -> None:  # fmt: skip
    rows = sorted(rows, key=lambda r: -r[gain] if report.has_gain(r, gain) else math.inf)
    report.write_csv(out / "candidates.csv", rows, report.candidate_columns(signals))
    report.write_csv(out / "signals.csv", [s.as_dict() for s in scores], SIGNALS_COLUMNS)
    report.write_html(out / "report.html", title, notes, rows, scores)
    report.print_tables(rows, [s for s in scores if report.TIER_GAIN[s.tier] == gain], gain)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def shortlist(first: Tier0, top: int, by: str) -> list[str]:
    """Tier 1's --top K candidates: the K best by tier 0's gain, or by a first-order signal (``--top-by``)."""
    if by == TOP_BY[0]:
        gain = {r["candidate"]: r["gain_train_loss"] for r in first[0]}
    else:
        gain = {c: v for c, v in first[4].get(by, {}).items() if math.isfinite(v)}
    return sorted(gain, key=lambda c: -gain[c])[:top]


def run_oracle(args: argparse.Namespace) -> Path:
    check_tier_args(args)
    if args.tier == 0:
        if args.from_scratch:
            raise ConfigError("--from-scratch retrains candidates: that is tier 1 (--tier 1)")
        run_tier0(args)
        return Path(args.out or Path(args.base) / "oracle")
    record, ckpt = base_run(args.base)
    out = Path(args.out or Path(args.base) / "oracle")
    only = [c for c in (args.candidates or "").split(",") if c] or None
    first: Tier0 | None = None
    if args.top is not None:  # tier 0 on every candidate first; tier 1 fine-tunes its top K plus --candidates
        every = argparse.Namespace(**{**vars(args), "candidates": None})
        first = run_tier0(every, out=out, write=False)
        only = list(dict.fromkeys([*shortlist(first, args.top, args.top_by), *(only or [])]))
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    steps = args.steps if args.steps is not None else (_steps_of(record) if args.from_scratch else DEFAULT_STEPS)
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    lr_scale = args.lr_scale if args.lr_scale is not None else (1.0 if args.from_scratch else DEFAULT_LR_SCALE)
    if not lr_scale > 0:
        raise ConfigError(f"--lr-scale must be > 0 (a factor on the base run's learning rate), got {lr_scale}")
    config, n_classes = record["config"], len(record.get("classes") or [])
    started = time.perf_counter()
    candidates, budget = enumerate_candidates(config["model"], n_classes, args.budget, args.from_scratch, only)
    notes = [f"base {args.base} ({ckpt}), budget {budget} parameters, {steps} steps at {lr_scale:g}x the base LR, "
             f"{args.seeds} seeds, "
             f"{'from scratch' if args.from_scratch else 'continued from the checkpoint'}"]  # fmt: skip
    if args.top is not None:
        notes.append(f"shortlist: the top {args.top} by {args.top_by}"
                     + (f", plus --candidates {args.candidates}" if args.candidates else ""))  # fmt: skip
    refused: list[Candidate] = []
    if args.from_scratch:
        notes.append("from scratch: every candidate retrained from initialisation (no step-0 check applies)")
    else:
        from harness.models.build import load_net

        net, _ = load_net(ckpt)
        candidates, refused = check_preserving(net, config["model"], ckpt, candidates, check_images(config["data"]))
        worst = max((c.max_change for c in candidates), default=0.0)
        notes.append(f"{len(candidates)} candidates function-preserving at step 0 (max |logit change| {worst:.2g}); "
                     "inserts left out (a block cannot be inserted into a loaded network function-preservingly; "
                     "--from-scratch trains them)")  # fmt: skip
        notes += [f"left out, not function-preserving: {c.name} (max |logit change| {c.max_change:.2g})"
                  for c in refused]  # fmt: skip
    if not candidates:
        raise ConfigError("no candidate left to train")
    if (out / JOBS_DIR).is_dir() and any((out / JOBS_DIR).iterdir()):
        raise ConfigError(f"{out} already holds an oracle run (jobs/); pick another --out, or re-score it with "
                          f"harness-signals {args.base} {out}")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_group(out, config, None if args.from_scratch else ckpt, candidates, lr_scale)
    cmd = command(out, [c.name for c in candidates], range(args.seeds), steps, args.overrides)
    meta = {"base": str(Path(args.base).resolve()), "ckpt": ckpt, "from_scratch": args.from_scratch, "steps": steps,
            "lr_scale": lr_scale, "seeds": args.seeds, "budget": budget, "top": args.top, "top_by": args.top_by,
            "candidates": [c.as_dict() for c in candidates],
            "refused": [c.as_dict() for c in refused], "command": cmd, "overrides": list(args.overrides),
            "setup_wall_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    (out / ORACLE_JSON).write_text(json.dumps(meta, indent=1))
    print(f"training {len(candidates) + 1} variants x {args.seeds} seeds ({steps} steps each); log: {out / 'jobs.log'}",
          file=sys.stderr)  # fmt: skip
    code = run_jobs(cmd, out / "jobs.log")
    meta["wall_s"] = round(time.perf_counter() - started, 1)  # setup + training
    meta["launcher_exit_code"] = code
    (out / ORACLE_JSON).write_text(json.dumps(meta, indent=1))
    score(args.base, out, out, notes, seed=args.signal_seed, reps=args.bootstrap, tier0_result=first)
    return out


def probe_run(ckpt: str, metrics: dict[str, float], oracle_dir: Path, out: Path) -> tuple[dict[str, float], list[str]]:
    """Metrics of a harness-probe run of the base checkpoint with the growth probes the base record lacks.

    A probe without a config (``conf/probes/<name>.yaml``) is not available: its signal is absent.
    An earlier probe run is reused: ``out``'s own first (a re-scoring folder may bring its own), then the oracle's.
    """
    for folder in (out / PROBE_RUN, oracle_dir / PROBE_RUN):
        if (folder / RECORD_NAME).is_file() and RunRecord.load(folder).get("status") == "finished":
            return dict(RunRecord.load(folder).get("metrics") or {}), [f"growth probes read from {folder}"]
    folder = out / PROBE_RUN
    have = {k.split("/", 1)[0] for k in metrics}
    missing = [p for p in GROWTH_SCORES if p not in have]
    available = [p for p in missing if (Path(CONF_DIR) / "probes" / f"{p}.yaml").is_file()]
    notes = [f"probes not available in this harness version: {', '.join(p for p in missing if p not in available)}"]
    notes = notes if len(available) < len(missing) else []
    if not available:
        return {}, notes
    cmd = [sys.executable, "-m", "harness.probe", f"ckpt={ckpt}", f"probes=[{','.join(available)}]",
           f"hydra.run.dir={folder.resolve()}"]  # fmt: skip
    with open(out / "probe_run.log", "w") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0 or not (folder / RECORD_NAME).is_file():
        return {}, [*notes, f"harness-probe of the base failed (exit {code}; see {out / 'probe_run.log'})"]
    return dict(RunRecord.load(folder).get("metrics") or {}), [*notes, f"growth probes {available} run on the base"]


def score(base: str | Path, oracle_dir: Path, out: Path, notes: list[str] | None = None, seed: int = 0,
          reps: int = BOOTSTRAP_REPS, tier0_result: Tier0 | None = None) -> None:  # fmt: skip
    """Gains from the oracle's jobs, every signal from the base, scored; write every output into ``out``."""
    meta_path = oracle_dir / ORACLE_JSON
    if not meta_path.is_file():
        raise ConfigError(f"{oracle_dir} is not a harness-oracle folder (no {ORACLE_JSON})")
    meta = json.loads(meta_path.read_text())
    if meta.get("tier") == 0:
        raise ConfigError(f"{oracle_dir} holds a tier-0 oracle (nothing to re-score: rerun harness-oracle --tier 0)")
    notes = list(notes or [])
    candidates = [Candidate(**{k: v for k, v in c.items() if k != "override"}) for c in meta["candidates"]]
    jobs, job_notes = read_jobs(oracle_dir)
    notes += job_notes
    diffs = paired_diffs(jobs)
    if not diffs:
        raise ConfigError(f"no candidate job is paired with a finished control job of the same seed in {oracle_dir}")
    gains = oracle_gains(diffs)
    base_run(base)  # a finished harness-train run, else one clear error
    run = load_run(Path(base) / RECORD_NAME)
    out.mkdir(parents=True, exist_ok=True)
    extra, probe_notes = probe_run(meta["ckpt"], run.metrics, oracle_dir, out)
    run.metrics.update({k: float(v) for k, v in extra.items() if isinstance(v, int | float) and v is not None})
    notes += probe_notes
    signals, signal_notes = all_signals(run, load_config(), candidates, seed,
                                        tier0_result[4] if tier0_result is not None else None)  # fmt: skip
    notes += signal_notes
    loss_diffs = {name: d["val_loss"] for name, d in diffs.items()}
    scores = [score_signal(name, s, loss_diffs, reps, seed) for name, s in signals.items()]
    rows = report.candidate_rows(candidates, gains, signals)
    if tier0_result is not None:  # both tiers: tier 0's gains beside tier 1's, signals scored against both
        rows0, diffs0, _, notes0, _ = tier0_result
        by_name = {r["candidate"]: r for r in rows0}
        for row in rows:
            row.update({k: v for k, v in by_name.get(row["candidate"], {}).items() if k.startswith("gain_train")})
        scores += [score_signal(name, s, diffs0, reps, seed, tier=0) for name, s in signals.items()]
        both = [r for r in rows if report.has_gain(r, "gain_train_loss")]
        rho = spearman([r["gain_train_loss"] for r in both], [r["gain_val_loss"] for r in both])
        notes += [*notes0, f"tiers agree: Spearman rho {rho:.3g} between the tier-0 and tier-1 gains over the "
                  f"{len(both)} candidates both scored"]  # fmt: skip
    _write_outputs(out, f"Where to grow: {meta['base']}", notes, rows, scores, list(signals), "gain_val_loss")
    if _wandb_mode(meta.get("overrides") or []):
        from harness.run.wandb_layout import run_name

        name = f"{run_name(run.variant, run.seed or 0)}-oracle"  # the base run's name; its own group, not the base's
        report.log_wandb(out, rows, scores, _wandb_mode(meta["overrides"]), name, f"oracle/{run.variant}", meta)


def _wandb_mode(overrides: list[str]) -> str | None:
    """'offline' (or $WANDB_MODE) when the oracle's overrides configure the wandb logger, else None."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("logger=")]
    return os.environ.get("WANDB_MODE", "offline") if chosen and "wandb" in chosen[-1] else None


def _fail(err: BaseException) -> None:
    print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
    raise SystemExit(2) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-oracle", description="Which candidate edits help, and which signals "
                                "predict it: an oracle of equal-cost edits, trained and scored.")  # fmt: skip
    p.add_argument("base", help="a finished harness-train run directory (record.json + checkpoints/)")
    p.add_argument("overrides", nargs="*", help="extra hydra overrides for every job (hydra/launcher=slurm, ...)")
    p.add_argument("--out", help="output folder (default: BASE/oracle)")
    p.add_argument("--candidates", help="comma-separated candidate names (widen targets, insert_<mixed>)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds per candidate (default {DEFAULT_SEEDS})")
    p.add_argument("--steps", type=int, help=f"training steps per job (default {DEFAULT_STEPS}; from scratch: "
                   "the base run's)")  # fmt: skip
    p.add_argument("--lr-scale", type=float, help=f"factor on the base run's learning rate for every job (default "
                   f"{DEFAULT_LR_SCALE:g} continued, 1 from scratch)")  # fmt: skip
    p.add_argument("--budget", type=int, help="parameters per candidate (default: 10%% of the base model)")
    p.add_argument("--from-scratch", action="store_true", help="retrain every candidate from initialisation")
    p.add_argument("--signal-seed", type=int, default=0, help="seed of the random signal and the bootstrap")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP_REPS, help="bootstrap replicates for rho's CI")
    p.add_argument("--tier", type=int, default=0, help="0 (default): add each candidate's units with TINY, line-search "
                   "on set A, measure the train-loss drop on set B (deterministic, no seeds); 1: fine-tune every "
                   "candidate and the control over --seeds (the earlier oracle)")  # fmt: skip
    p.add_argument("--top", type=int, help="tier 1 only: fine-tune the top K candidates by --top-by (default tier 0's "
                   "gain), plus --candidates")  # fmt: skip
    p.add_argument("--top-by", default=TOP_BY[0], help=f"what ranks the --top K shortlist ({' | '.join(TOP_BY)}; "
                   f"default {TOP_BY[0]}: tier 0's gain; {TINY} or {GRADMAX_PER_UNIT}: that first-order signal on "
                   "set A)")  # fmt: skip
    p.add_argument("--set-a", type=int, default=SET_A, help="tier 0: training images of TINY's directions and line "
                   f"search, half each with --amplitude held_out (default {SET_A})")  # fmt: skip
    p.add_argument("--amplitude", default=AMPLITUDE,
                   help=f"tier 0: where TINY's line search runs ({' | '.join(AMPLITUDES)}; default {AMPLITUDE}): same "
                   "= on set A, where its directions were fit; held_out = directions from A's first half, amplitude "
                   "from its second")  # fmt: skip
    p.add_argument("--set-b", type=int, default=SET_B, help="tier 0: disjoint training images the gain is measured on "
                   f"(default {SET_B})")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parser().parse_intermixed_args(argv)
    try:
        run_oracle(args)
    except ConfigError as err:
        _fail(err)


def signals_main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(prog="harness-signals", description="Re-score every signal on an oracle run.")
    p.add_argument("base", help="the base run directory the oracle grew")
    p.add_argument("oracle", help="the harness-oracle output folder")
    p.add_argument("--out", help="output folder (default: ORACLE)")
    p.add_argument("--signal-seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP_REPS)
    args = p.parse_args(argv)
    try:
        score(args.base, Path(args.oracle), Path(args.out or args.oracle), seed=args.signal_seed, reps=args.bootstrap)
    except ConfigError as err:
        _fail(err)


if __name__ == "__main__":
    main()
