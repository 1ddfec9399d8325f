"""Findings per experiment against seeds, and the A/A false-finding rate, on real runs (issue 29's measurement).

Usage:
  python scripts/compare_seeds.py curve BASE_DIRS... --variant VARIANT_DIRS... [--sizes 2 3 5 8]
  python scripts/compare_seeds.py aa RUN_DIRS... [--per-arm 3 2x3] [--touched mixed3b_5x5] [--limit 100]

`curve` compares the first n seeds (by seed number) of each arm for every n; `aa` splits one config's runs into
two arms every way and counts the findings (all false), with the headline family of the planned edit `--touched`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.compare.load import load_runs
from harness.compare.splits import aa_splits, seed_curve
from harness.compare.stats import ALPHA


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("curve", "aa"))
    parser.add_argument("inputs", nargs="+", help="run folders (or folders above them) of the base / the one config")
    parser.add_argument("--variant", nargs="*", default=[], help="curve: run folders of the variant")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2, 3, 5, 8])
    parser.add_argument("--per-arm", nargs="*", default=["3"], help="aa: arm sizes, '3' or '2x3' (2 vs 3 seeds)")
    parser.add_argument("--touched", nargs="*", default=["mixed3b_5x5"], help="aa: the planned edit's layers")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=ALPHA)
    args = parser.parse_args(argv)
    runs = load_runs(args.inputs)
    if args.mode == "curve":
        for p in seed_curve(runs, load_runs(args.variant), args.sizes, args.alpha):
            rep = "n/a (<4 seeds)" if p.replicate is None else p.replicate
            print(f"{len(p.seeds[0])} vs {len(p.seeds[1])} seeds {p.seeds}: {len(p.findings)} findings beyond noise "
                  f"of {p.family_size} tests, {rep} replicate; {p.verdict}\n    findings: {', '.join(p.findings)}")
            curve = p.power_curve([3, 4, 5, 6, 8, 10, 12, 16, 20, 32])
            print("    power curve at the observed effects and spread (seeds per arm: findings): "
                  + ", ".join(f"{n}: {k}" for n, k in curve.items()))
        return 0
    for sizes in args.per_arm:
        per_arm, _, other = sizes.partition("x")
        per_arm, other = int(per_arm), int(other or per_arm)
        points = aa_splits(runs, per_arm, set(args.touched), args.alpha, args.limit, other_arm=other)
        with_any = sum(bool(p.findings) for p in points)
        total = sum(len(p.findings) for p in points)
        sizes = sorted({p.family_size for p in points})
        print(f"A/A {per_arm} vs {other} seeds of {len(runs)} runs: {len(points)} splits, family {sizes} tests; "
              f"splits with any finding {with_any}/{len(points)} = {with_any / max(len(points), 1):.3f} "
              f"(nominal FDR {args.alpha}); false findings per split {total / max(len(points), 1):.3f}")
        for p in points:
            if p.findings:
                print(f"    {p.seeds}: {', '.join(p.findings)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
