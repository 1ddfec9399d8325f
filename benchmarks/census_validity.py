"""Does the curve census tell a curve-trained model from one that never saw a curve? Measured over seeds.

    python benchmarks/census_validity.py --seeds 5 --precision bf16-mixed --out runs/census
    python benchmarks/census_validity.py --seeds 5 --precision 32-true --out runs/census

For each world (the default one, and `data.classes=[line,corner,texture]`, no curves at all) it trains `--seeds`
seeds with `harness-train -m` into `<out>/<world>_<bf16|fp32>/` (a sweep folder that already holds finished runs
is reused: run it again to add seeds or criteria), then reruns the census on every run's best checkpoint twice
from ONE set of responses: without the corner control (`min_curve_over_corner: 0`, the census before issue 23)
and with the configured one (`conf/probes/curves.yaml`), plus the random-init control of each run's architecture.
It prints per layer the mean detector count with a 95% t interval over seeds, the curve - no-curve difference
with its Welch 95% interval, the random-init counts, and how many curve-world detectors the corner control
removes. `--json PATH` writes every number.

Why a script and not a test: it trains 2 x seeds models (about 2 min each on 2 CPU cores at the default budget).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import OmegaConf
from scipy import stats as sstats

from harness.facts.conf_dir import CONF_DIR
from harness.facts.runs import find_records, load_record
from harness.facts.stats import welch
from harness.models.build import load_net
from harness.probes import ProbeContext, ProbeSet
from harness.probes.curve_crop import plan_crop
from harness.probes.curves import CurveCensus, centre_positions, geometric_copy
from harness.run.builders import control_seed, fresh_model_factory

WORLDS = {"curve": [], "nocurve": ["data.classes=[line,corner,texture]"]}
TAGS = {"bf16-mixed": "bf16", "32-true": "fp32"}
LAYERS = ["mixed3a", "mixed3b", "mixed4a", "mixed4b"]


def finished(folder: Path) -> dict[int, dict]:
    """{seed: record} of the finished runs under a sweep folder."""
    records = [load_record(p) for p in find_records([folder])] if folder.exists() else []
    return {r["seed"]: r for r in records if r.get("status") == "finished" and r.get("seed") is not None}


def train(folder: Path, world: str, precision: str, seeds: int) -> None:
    """Train the seeds this sweep folder lacks, into a subfolder (so earlier runs stay where they are)."""
    missing = [s for s in range(seeds) if s not in finished(folder)]
    if not missing:
        return
    sub = folder / f"seeds-{missing[0]}-{missing[-1]}"
    cmd = ["harness-train", "-m", f"seed={','.join(map(str, missing))}", f"trainer.precision={precision}",
           "logger=none", f"hydra.sweep.dir={sub}", *WORLDS[world]]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def curve_census() -> dict:
    """The census settings of conf/probes/curves.yaml (what a run uses)."""
    cfg = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "probes" / "curves.yaml"))["curves"]
    cfg.pop("_target_")
    cfg.pop("layers")
    return cfg


def counts(record: dict, layers: list[str], settings: dict) -> dict[str, dict[str, list[int]]]:
    """{criterion: {layer: [model detectors, random-init detectors]}} for "before" (no corner test) and "after",
    on the run's best checkpoint and its own probe set."""
    net, run = load_net(record["checkpoints"]["best"])
    config = record["config"]
    datamodule = hydra.utils.instantiate(OmegaConf.create(config["data"]))
    probing = config["probing"]
    probe_set = ProbeSet.from_datamodule(datamodule, n=probing["probe_set_size"], seed=probing["probe_set_seed"])
    arch = OmegaConf.create({"model": run.get("architecture") or config["model"]})
    seed = int(record["seed"])
    control = fresh_model_factory(arch, datamodule.num_classes, datamodule.image_size, control_seed(seed))()
    ctx = ProbeContext(net, layers, probe_set, seed=seed)
    after = CurveCensus(**settings)
    before = CurveCensus(**{**settings, "min_curve_over_corner": 0.0})
    size, device = probe_set.images.shape[-1], torch.device("cpu")
    geometric = geometric_copy(net)
    positions = centre_positions(geometric, layers, size, device, seed)
    crop = plan_crop(net, geometric, positions, size, after.check_images(size, seed), device, seed)
    model_stats = after.census(ctx, net, layers, positions, crop)
    control_stats = after.census(ctx, control, layers, positions)  # full images: no crop check needed
    out: dict[str, dict[str, list[int]]] = {}
    for name, probe in (("before", before), ("after", after)):
        out[name] = {layer: [int(probe.is_detector(stats[layer]).sum()) for stats in (model_stats, control_stats)]
                     for layer in layers}  # fmt: skip
    # curve_over_corner of the units that pass every other test: the count at any threshold, without a rerun
    out["curve_over_corner"] = {
        layer: sorted(round(float(v), 3) for v in s["curve_over_corner"][before.is_detector(s)])
        for layer, s in model_stats.items()
    }
    return out


def interval(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (float("nan"),) * 3
    if len(x) < 2 or x.std() == 0:
        return float(x.mean()), float(x.mean()), float(x.mean())
    half = float(sstats.t.ppf(0.975, len(x) - 1)) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def report(results: dict, layers: list[str], precision: str) -> None:
    for criterion in ("before", "after"):
        label = "without the corner control" if criterion == "before" else "with the corner control (configured)"
        print(f"\n## {precision}, {label}")
        print("| layer | curve world | no-curve world | curve - no-curve (Welch 95% CI) "
              "| random init (curve / no-curve) |")
        print("|---|---|---|---|---|")
        for layer in layers:
            cells = {}
            for world in WORLDS:
                vals = [r[criterion][layer][0] for r in results[world].values()]
                m, lo, hi = interval(vals)
                cells[world] = (vals, f"{m:.1f} [{lo:.1f}, {hi:.1f}] ({', '.join(map(str, vals))})")
            diff, ci, p = welch(cells["curve"][0], cells["nocurve"][0])
            ci_text = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "n/a"
            rand = " / ".join(f"{interval([r[criterion][layer][1] for r in results[w].values()])[0]:.1f}"
                              for w in WORLDS)  # fmt: skip
            p_text = f", p {p:.3f}" if p is not None else ""
            print(f"| {layer} | {cells['curve'][1]} | {cells['nocurve'][1]} | {diff:+.1f} {ci_text}{p_text} | {rand} |")
    removed = {layer: [r["before"][layer][0] - r["after"][layer][0] for r in results["curve"].values()]
               for layer in layers}  # fmt: skip
    print("\ncurve-world detectors the corner control removes (per seed): "
          + "; ".join(f"{k} {v}" for k, v in removed.items()))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--precision", default="bf16-mixed", choices=sorted(TAGS))
    parser.add_argument("--out", type=Path, default=Path("runs/census"))
    parser.add_argument("--layers", nargs="+", default=LAYERS)
    parser.add_argument("--no-train", action="store_true", help="only census the runs already in --out")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="census settings instead of curves.yaml's, e.g. min_curve_over_corner=1.5")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    settings = curve_census()
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = json.loads(value)
    results: dict[str, dict] = {}
    for world in WORLDS:
        folder = args.out / f"{world}_{TAGS[args.precision]}"
        if not args.no_train:
            train(folder, world, args.precision, args.seeds)
        results[world] = {}
        for seed, record in sorted(finished(folder).items()):
            if seed < args.seeds:
                results[world][seed] = counts(record, args.layers, settings)
                print(f"{world} seed {seed}: {results[world][seed]}", file=sys.stderr, flush=True)
    report(results, args.layers, args.precision)
    if args.json:
        out = {"precision": args.precision, "settings": settings, "results": results}
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
