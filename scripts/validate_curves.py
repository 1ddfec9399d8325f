"""Does the curves probe's fixed criterion separate curve detectors from generic edge/corner detectors?

Trains the default tiny InceptionV1 on the full world and on the no-curve world (lines, corners, texture)
for a few seeds (reusing finished runs), runs the curves probe (conf/probes/curves.yaml, with the
random-init control) on each checkpoint, and prints detectors per layer. The criterion passes when every
curve-trained run has more detectors in mixed3a + mixed3b than every no-curve run and every random init.

Usage: python scripts/validate_curves.py --out /tmp/curves_val/ep4 --epochs 4 [min_selectivity=4 ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import hydra
import yaml
from omegaconf import OmegaConf

from harness.data.world import World
from harness.models.build import load_net
from harness.probes import ProbeContext, ProbeSet

WORLDS = {"full": [], "nocurve": ["data.classes=[line,corner,texture]"]}
KEY_LAYERS = ("mixed3a", "mixed3b")
CONF = Path(__file__).resolve().parents[1] / "conf" / "probes" / "curves.yaml"


def train(run_dir: Path, seed: int, world: str, epochs: int) -> Path:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        args = ["harness-train", "logger=none", f"seed={seed}", f"trainer.max_epochs={epochs}", "test=false",
                "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *WORLDS[world]]  # fmt: skip
        log = (run_dir.parent / f"{run_dir.name}.log").open("w")
        subprocess.run(args, check=True, stdout=log, stderr=subprocess.STDOUT)
    return ckpt


def probe(ckpt: Path, overrides: list[str], seed: int = 0) -> tuple[dict, dict, float, float]:
    net, record = load_net(ckpt)
    model_cfg = OmegaConf.create(record["config"]["model"])

    def make_model():
        return hydra.utils.instantiate(model_cfg, num_classes=len(record["classes"]))

    cfg = OmegaConf.merge(OmegaConf.create(yaml.safe_load(CONF.read_text())), OmegaConf.from_dotlist(
        [f"curves.{o}" for o in overrides]))  # fmt: skip
    census = hydra.utils.instantiate(cfg.curves)
    probe_set = ProbeSet.from_world(World(image_size=64), n=64, seed=1234)  # only its image size matters here
    ctx = ProbeContext(net, list(census.layers), probe_set, make_model=make_model, seed=seed)  # a fresh control per run
    start = time.perf_counter()
    result = census.run(ctx)
    acc = record["epochs"][-1].get("val/acc", float("nan")) if record.get("epochs") else float("nan")
    return result.scalars, result.info, time.perf_counter() - start, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/curves_val/ep4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="probe settings, e.g. min_selectivity=4")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for world in WORLDS:
            ckpt = train(out / f"{world}_s{seed}", seed, world, args.epochs)
            scalars, info, seconds, acc = probe(ckpt, args.overrides, seed)
            rows.append((world, seed, acc, scalars, info, seconds))
    layers = [k.split("/")[0] for k in rows[0][3] if k.endswith("/detectors")]
    print(f"criterion overrides: {args.overrides or 'none (conf/probes/curves.yaml)'}; epochs={args.epochs}")
    print(f"{'world':8} {'seed':>4} {'val_acc':>7}  " + "  ".join(f"{n + ' det/rand':>17}" for n in layers)
          + f"  {'cluster':>8} {'probe_s':>7}")  # fmt: skip
    for world, seed, acc, sc, info, seconds in rows:
        cells = "  ".join(f"{int(sc[f'{n}/detectors']):>8d}/{int(sc.get(f'{n}/detectors_random_init', -1)):<8d}"
                          for n in layers)  # fmt: skip
        print(f"{world:8} {seed:>4} {acc:>7.4f}  {cells}  {info['curve_cluster_layer']!s:>8} {seconds:>7.2f}")

    def key_count(sc: dict, suffix: str) -> int:
        return int(sum(sc.get(f"{n}/{suffix}", 0) for n in KEY_LAYERS))

    full = [key_count(r[3], "detectors") for r in rows if r[0] == "full"]
    nocurve = [key_count(r[3], "detectors") for r in rows if r[0] == "nocurve"]
    rand = [key_count(r[3], "detectors_random_init") for r in rows]
    ok = min(full) > max(nocurve) and min(full) > max(rand)
    print(f"mixed3a+mixed3b detectors: full {full}, no-curve {nocurve}, random init {rand}")
    print(f"criterion {'SEPARATES' if ok else 'does NOT separate'} curve-trained from no-curve and random init")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
