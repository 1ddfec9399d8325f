"""Guided vs random, now a thin wrapper over the grow loop (``experiment=grow_loop``, harness/grow/).

The first version of this experiment retrained from scratch after every edit with 4 unpaired seeds and two
arms. It is now one ``harness-train`` multirun of (policy, seed) chains, then ``harness-compare --baseline
random`` (Welch, BH, and the paired-by-seed verdict) and the grow report (curves per round with spread,
per-class accuracy with the curve classes marked, every edit with its evidence). This script only spells
that out; run the three commands yourself for anything it does not cover:

    harness-train -m experiment=grow_loop grow.policy=suggest,random seed='range(4)' hydra/launcher=joblib \
        hydra.sweep.dir=DIR
    harness-compare DIR --baseline random
    python -m harness.grow.report DIR

Usage: python scripts/guided_vs_random.py --out DIR [--seeds 4] [--rounds 2] [--policies suggest,random]
                                          [--mode continue|scratch] [--dry-run] [hydra overrides ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def commands(args: argparse.Namespace, overrides: list[str]) -> list[list[str]]:
    """The multirun, the comparison and the report, as argument lists."""
    out = str(Path(args.out).resolve())
    train = [sys.executable, "-m", "harness.train", "-m", "experiment=grow_loop", f"grow.policy={args.policies}",
             f"seed=range({args.seeds})", f"grow.rounds={args.rounds}", f"grow.mode={args.mode}",
             "hydra/launcher=joblib", f"hydra.sweep.dir={out}", *overrides]  # fmt: skip
    compare = [sys.executable, "-m", "harness.compare", out, "--baseline", "random"]
    report = [sys.executable, "-m", "harness.grow.report", out, "--baseline", "random"]
    return [train, compare, report]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="guided_vs_random", help="the multirun directory")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per policy (paired across policies)")
    parser.add_argument("--rounds", type=int, default=2, help="growth rounds after the base round")
    parser.add_argument("--policies", default="suggest,random", help="comma-separated grow.policy values")
    parser.add_argument("--mode", default="continue", choices=("continue", "scratch"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job, e.g. grow.steps=200")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.rounds < 0:
        parser.error("--seeds must be >= 1 and --rounds >= 0")
    for cmd in commands(args, args.overrides):
        print(" ".join(cmd), flush=True)
        if not args.dry_run and subprocess.run(cmd, check=False).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
