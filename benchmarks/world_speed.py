"""Throughput of the stimulus world generator (images/s), with and without concept masks.

Why: training reads the world on the fly or pre-generates it; generation must not starve a
small CNN (~2,000 img/s fwd+bwd on 2 cores). Prints one line per setting and writes JSON.

Usage: python benchmarks/world_speed.py --sizes 64 --n 4096 --out benchmarks/results/world_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from harness.data.world import World


def measure(size: int, n: int, with_masks: bool, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` images/s (best, because other processes on a shared box only add time)."""
    world = World(image_size=size)
    world.generate(min(n, 256), seed=0, with_masks=with_masks)  # warm-up: allocator, kernels
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        world.generate(n, seed=r + 1, with_masks=with_masks)
        times.append(time.perf_counter() - start)
    return {
        "image_size": size,
        "n": n,
        "with_masks": with_masks,
        "best_images_per_s": n / min(times),
        "median_images_per_s": n / sorted(times)[len(times) // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--n", type=int, default=4096, help="images per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/world_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        for with_masks in (True, False):
            row = measure(size, args.n, with_masks, args.repeats)
            rows.append(row)
            print(
                f"{size:4d} px  masks={str(with_masks):5s}  "
                f"{row['best_images_per_s']:8.0f} img/s best  {row['median_images_per_s']:8.0f} median"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
