"""Guided vs random: does following `harness-suggest` beat random edits of the same parameter budget?

The skeptic's baseline: someone who randomly adds layers and tries a dozen tweaks often wins. So, per
seed: train the base model (round 0, shared by both arms, probes on), then for K rounds
  guided arm  apply the top suggestion harness-suggest accepts for this arm's last run,
  random arm  apply a random edit (widen a random branch, or insert a block) adding about the same
              number of parameters as the guided edit of that round (same seed),
and retrain. Every training is `harness.train.train(cfg)` with the same data, epochs and seed, from
scratch with the accumulated edits (the simplest fair comparison; fine-tuning from the previous
checkpoint via `model.init_from=<ckpt>` is another engineer's addition and not used here). Only runs
whose record feeds a suggestion run probes; probing is not training, so compute per training is equal.

Default world: `data=world_curvature` (arcs that differ only in curvature), where curve capacity is
the bottleneck. Writes rounds.csv and report.html into --out and prints the verdict (guided - random
final test accuracy with a 95% Welch interval; an honest null is a valid result).

Usage: python scripts/guided_vs_random.py --rounds 2 --seeds 4 --epochs 4 --out runs/gvr [hydra overrides]
       python scripts/guided_vs_random.py --tiny --out /tmp/gvr        (smallest settings, for the test)
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from harness.models.edits import MIXED_NAMES, widen_targets
from harness.suggest.cli import load_config
from harness.suggest.load import load_run
from harness.suggest.overrides import Edit, as_overrides, check
from harness.suggest.overrides import compose as compose_edit
from harness.suggest.report import write_report
from harness.suggest.rules import suggest
from harness.suggest.verdict import judge
from harness.train import CONF_DIR, train

DEFAULTS = ["data=world_curvature", "data.train_size=4000", "data.val_size=1000", "data.test_size=1000",
            "logger=none", "trainer.enable_progress_bar=false"]  # fmt: skip
TINY = ["data.train_size=256", "data.val_size=64", "data.test_size=64", "data.batch_size=32",
        "trainer.accelerator=cpu", "probing.probe_set_size=64"]  # fmt: skip
PROBES = ["probes=[activations,curves,linear,cka,lineage]", "probing.every_n_epochs=0"]
TINY_PROBES = ["probes.curves.orientations=36", "probes.curves.radii=[0.08,0.125,0.2]"]
INSERT_TOLERANCE = 0.5  # a random insert counts as "the same budget" within +-50% of the guided edit's params


def compose_cfg(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


class Experiment:
    """Trains one (arm, seed, round) at a time and keeps what the report needs."""

    def __init__(
        self, out: Path, epochs: int, overrides: list[str], suggest_overrides: list[str], probes: list[str]
    ) -> None:
        self.out, self.epochs, self.overrides, self.probes = out, epochs, overrides, probes
        self.suggest_cfg = load_config(suggest_overrides)
        base = compose_cfg(overrides)
        self.model = OmegaConf.to_container(base.model, resolve=True)
        self.classes = list(base.data.classes)
        self._params: dict[tuple, int] = {}

    def params(self, widen: dict[str, int], insert: list[str]) -> int:
        """Parameter count of the model with these edits (built once per distinct edit set)."""
        key = (tuple(sorted(widen.items())), tuple(insert))
        if key not in self._params:
            import hydra

            cfg = {**self.model, "widen": dict(widen), "insert": list(insert), "num_classes": len(self.classes)}
            net = hydra.utils.instantiate(cfg)
            self._params[key] = sum(p.numel() for p in net.parameters())
        return self._params[key]

    def train(self, arm: str, seed: int, rnd: int, widen: dict, insert: list, probes: bool) -> dict[str, Any]:
        edits = as_overrides(widen, insert)
        cfg = compose_cfg([*self.overrides, f"seed={seed}", f"trainer.max_epochs={self.epochs}",
                           *(self.probes if probes else ["probes=none"]), *edits])  # fmt: skip
        run_dir = self.out / "runs" / f"{arm}_s{seed}_r{rnd}"
        with open_dict(cfg):
            cfg.paths.output_dir = str(run_dir)
            cfg.variant = f"{arm}/round{rnd}"
        started = time.perf_counter()
        metrics, objects = train(cfg)
        row = {"arm": arm, "seed": seed, "round": rnd, "overrides": " ".join(edits),
               "params": objects["record"].data["model"]["params/total"],
               "val_acc": metrics.get("val/acc", float("nan")), "test_acc": metrics.get("test/acc", float("nan")),
               "wall_s": round(time.perf_counter() - started, 1), "run_dir": str(run_dir)}  # fmt: skip
        row.update({f"test_acc/{c}": metrics.get(f"test/acc/{c}", float("nan")) for c in self.classes})
        return row

    def guided_edit(self, run_dir: str) -> tuple[Edit | None, str, str]:
        """The best suggestion harness-train accepts for that run: (edit, rules, evidence)."""
        ranked, _ = suggest(load_run(Path(run_dir) / "record.json"), self.suggest_cfg)
        for s in ranked:
            if s.problem is None:
                return s.edit, "+".join(s.rules), "; ".join(s.evidence)
        return None, "none", "no rule fired with an accepted edit: architecture kept"

    def random_edit(self, rng: random.Random, widen: dict, insert: list, budget: int) -> Edit | None:
        """A random widen of a mixed-block branch or a random insert, adding about `budget` parameters."""
        if budget == 0:
            return None
        now = self.params(widen, insert)
        last = self.model.get("last_layer")
        inserts = []
        if budget > 0:
            for layer in MIXED_NAMES[: MIXED_NAMES.index(last) + 1 if last else None]:
                added = self.params(*compose_edit(widen, insert, Edit("insert", layer))) - now
                if abs(added - budget) <= INSERT_TOLERANCE * abs(budget):
                    inserts.append(layer)
        if inserts and rng.random() < 0.5:
            return Edit("insert", rng.choice(inserts))
        branches = [b for b in widen_targets(insert, last) if b.startswith("mixed")]
        for _ in range(20):  # a prune may not fit a narrow branch: draw again
            branch = rng.choice(branches)
            per_channel = self.params(*compose_edit(widen, insert, Edit("widen", branch, 1))) - now
            n = round(budget / per_channel) or (1 if budget > 0 else -1)
            edit = Edit("widen", branch, n)
            if check(self.model, *compose_edit(widen, insert, edit)) is None:
                return edit
        return None


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exp = Experiment(out, args.epochs, overrides, args.suggest or [], PROBES + (TINY_PROBES if args.tiny else []))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        base = exp.train("base", seed, 0, {}, [], probes=True)
        rows += [{**base, "arm": arm, "edit": "", "rule": "", "evidence": ""} for arm in ("guided", "random")]
        state = {arm: ({}, [], base) for arm in ("guided", "random")}
        rng = random.Random(10_000 + seed)
        for rnd in range(1, args.rounds + 1):
            widen, insert, last = state["guided"]
            edit, rule, evidence = exp.guided_edit(last["run_dir"])
            new = compose_edit(widen, insert, edit) if edit else (widen, insert)
            budget = exp.params(*new) - exp.params(widen, insert)
            row = exp.train("guided", seed, rnd, *new, probes=rnd < args.rounds)
            rows.append({**row, "edit": edit.incremental() if edit else "", "rule": rule, "evidence": evidence})
            state["guided"] = (*new, row)

            widen, insert, last = state["random"]
            edit = exp.random_edit(rng, widen, insert, budget)
            new = compose_edit(widen, insert, edit) if edit else (widen, insert)
            row = exp.train("random", seed, rnd, *new, probes=False)
            rows.append({**row, "edit": edit.incremental() if edit else "", "rule": f"random (budget {budget:+d})",
                         "evidence": ""})  # fmt: skip
            state["random"] = (*new, row)
            print(f"seed {seed} round {rnd}: guided {state['guided'][2]['test_acc']:.4f} "
                  f"random {row['test_acc']:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    wall = time.perf_counter() - started
    finals = {arm: {r["seed"]: r["test_acc"] for r in rows if r["arm"] == arm and r["round"] == args.rounds}
              for arm in ("guided", "random")}  # fmt: skip
    verdict = judge(list(finals["guided"].values()), list(finals["random"].values()),
                      [(finals["guided"][s], finals["random"][s]) for s in finals["guided"]])  # fmt: skip
    columns = ["arm", "seed", "round", "edit", "overrides", "rule", "params", "val_acc", "test_acc",
               *[f"test_acc/{c}" for c in exp.classes], "wall_s", "run_dir", "evidence"]  # fmt: skip
    with open(out / "rounds.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    settings = {"rounds": args.rounds, "seeds per arm": args.seeds, "epochs per training": args.epochs,
                "overrides (every training)": " ".join(overrides), "suggest overrides": " ".join(args.suggest or []),
                "training": "from scratch each round with the accumulated edits (no fine-tuning)",
                "wall time": f"{wall:.0f} s"}  # fmt: skip
    curve = [c for c in exp.classes if c in set(exp.suggest_cfg.curve_classes)]
    report = write_report(out, rows, verdict, exp.classes, curve, settings)
    print(f"verdict: {verdict.text}")
    print(f"wall time: {wall:.0f} s; wrote {out / 'rounds.csv'} and {report}")
    return {"verdict": verdict, "rows": rows, "wall_s": wall}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="edit rounds K (default 2; tiny: 1)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds S per arm (default 4; tiny: 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training (default 4; tiny: 1)")
    parser.add_argument("--out", default="guided_vs_random", help="report directory")
    parser.add_argument("--tiny", action="store_true", help="smallest settings (tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = torch's default)")
    parser.add_argument(
        "--suggest",
        action="append",
        metavar="KEY=VALUE",
        help="a harness-suggest threshold override (repeatable), e.g. --suggest class_gap=0.05",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every training, e.g. model.width=0.5")
    args = parser.parse_args(argv)
    small = {"rounds": 1, "seeds": 1, "epochs": 1} if args.tiny else {"rounds": 2, "seeds": 4, "epochs": 4}
    for key, value in small.items():
        setattr(args, key, value if getattr(args, key) is None else getattr(args, key))
    if args.rounds < 1 or args.seeds < 1 or args.epochs < 1:
        parser.error("--rounds, --seeds and --epochs must be >= 1")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads > 0:
        import torch

        # One intra-op thread: on a CPU shared with other jobs, OpenMP threads spin-wait on each other and a
        # probe's backward pass can take 10x longer; one thread per process is steady.
        torch.set_num_threads(args.threads)
    return run(args, [*DEFAULTS, *(TINY if args.tiny else []), *args.overrides])


if __name__ == "__main__":
    main(sys.argv[1:])
