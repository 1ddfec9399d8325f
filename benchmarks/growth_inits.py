"""Do new units learn, and does growing a planted bottleneck back repair it? Per widen init (zero, net2net,
gradmax, tiny) and optimizer handling (fresh, carried), over paired seeds.

    python benchmarks/growth_inits.py                       # one seed, ~5 CPU-min at the defaults
    python benchmarks/growth_inits.py --seeds 0 1 2 3 4 --target conv2d2 --cut 44 --json runs/repair_conv2d2.json
    python benchmarks/growth_inits.py --arms zero/fresh/lr=10 gradmax/fresh/frac=0.05  # new_lr_scale, GradMax fan-out

The base is the tiny InceptionV1 (width 0.25, batch norm) with ``--target`` cut by ``--cut`` channels (conv2d0
cut to 2 channels is ``experiment=planted_stem``), trained ``--base-steps`` on the curvature world at reduced
size. The target is then grown back by the same units with each init (gradmax/tiny on ``--widen-batches`` fixed
training batches) and trained ``--steps`` more, either with a fresh optimizer and a schedule restarted at peak
(``fresh``, today's continued run) or with the base's optimizer state carried through the unit maps and its
schedule continued (``carry``). A ``none`` arm trains the same steps without growing, and ``unplanted`` trains
the uncut model for all ``--base-steps + --steps`` on the same batches: the plant's cost is unplanted - none
(fresh), and an arm recovers (arm - none) / (unplanted - none) of it. Every arm of one seed sees the same batches.

Reported per arm: the step-0 loss change on the fixed batches (eval mode), the new fan-in's gradient norm at step
0 (training mode, the mean cross-entropy of the fixed batches: what the optimizer sees), and after
``--round-steps`` (one grow-loop round, conf/experiment/grow_loop.yaml) and ``--steps`` steps the fraction of new
units alive (non-zero on >= 1% of the validation images) and their mean fan-out norm (the existing units' in
brackets), the validation accuracy and the training loss on a fixed set of training images (eval mode).
With several seeds it ends with a table: per arm the mean val acc and train loss, the paired difference from
``none fresh`` with a 95% t interval, and the recovered fraction of the plant's cost (bootstrap over seeds).

Why a script and not a test: it trains 11 arms per seed (minutes of CPU each).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.data.world_datamodule import WorldDataModule
from harness.facts.stats import paired_interval
from harness.growth.carry import Growth, new_entry_masks
from harness.growth.gradmax_init import gradmax_init
from harness.growth.new_units import mean_loss, new_units, prepare
from harness.growth.widen_init import init_units
from harness.models import InceptionV1, resize
from harness.models.hooks import capture, eval_mode
from harness.run.module import warmup_cosine

CLASSES = ["arc_r4", "arc_r7", "arc_r12", "arc_r20", "line", "corner", "wave", "texture"]  # data=world_curvature
ARCH = {"width": 0.25, "batch_norm": True, "lrn": False, "last_layer": "mixed4b", "dropout": 0.0}
LR, WD = 0.004, 0.0005  # conf/module/default.yaml


def _optimizer(net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WD)


def _train(net: nn.Module, opt, sched, batches, losses: list[float]) -> None:
    net.train()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(prepare(x)), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with eval_mode(net):
        return float((net(prepare(x)).argmax(1) == y).float().mean())


@torch.no_grad()
def _units(net: nn.Module, target: str, x: torch.Tensor, new: list[int]) -> dict[str, float]:
    """Fraction of new units alive (non-zero on >= 1% of images) and mean fan-out norms (new, old)."""
    with eval_mode(net), capture(net, [target]) as cache:
        net(prepare(x))
        act = cache[target].float()
    on = (act.amax(dim=(2, 3)) > 0).float().mean(0)  # per unit: fraction of images where it fires
    alive = float((on[new] >= 0.01).float().mean())
    (found,) = new_units(net, {target: new}, x.shape[-1], "zero")
    norms = [float(found.fan_out(u).norm()) for u in range(len(on))]
    old = [n for u, n in enumerate(norms) if u not in new]
    return {"alive": alive, "fan_out": sum(norms[u] for u in new) / len(new), "fan_out_old": sum(old) / len(old)}


@torch.no_grad()
def _fixed_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy on a fixed set of training images, eval mode: the train-loss cost without batch noise."""
    with eval_mode(net):
        return float(torch.cat([F.cross_entropy(net(prepare(xb)), yb, reduction="none")
                                for xb, yb in zip(x.split(256), y.split(256))]).mean())  # fmt: skip


def _fan_in_grad(net: nn.Module, target: str, batches, new: list[int]) -> float:
    net.train()
    state = copy.deepcopy(net.state_dict())  # training-mode forward moves batch-norm statistics: put them back
    total = sum(len(y) for _, y in batches)
    loss = sum(F.cross_entropy(net(prepare(x)), y, reduction="sum") for x, y in batches) / total
    weight = net.hook_points()[target].conv.weight
    grad = torch.autograd.grad(loss, weight)[0][new]
    net.load_state_dict(state)
    return float(grad.norm())


def _seed(args: argparse.Namespace, seed: int, data: dict[str, torch.Tensor]) -> list[dict]:
    """Every arm of one seed: the unplanted reference, then the planted base grown back with each init."""
    target, cut = args.target, args.cut
    train_x, train_y = data["train_x"], data["train_y"]
    gen = torch.Generator().manual_seed(seed)

    def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.randint(len(train_y), (n, args.batch_size), generator=gen)
        return [(train_x[i], train_y[i]) for i in idx]

    checkpoints = sorted({min(args.round_steps, args.steps), args.steps})

    def measure(net: nn.Module, new: list[int]) -> dict[str, float]:
        return {**(_units(net, target, data["val_x"], new) if new else {}),
                "val_acc": _accuracy(net, data["val_x"], data["val_y"]),
                "train_loss": _fixed_loss(net, data["fixed_x"], data["fixed_y"])}  # fmt: skip

    def train_and_measure(net: nn.Module, opt, sched, new: list[int], row: dict) -> None:
        """Train on the continuation batches, measuring at each checkpoint into ``row["at<step>"]``."""
        done = 0
        for upto in checkpoints:
            _train(net, opt, sched, later[done:upto], [])
            done = upto
            row[f"at{upto}"] = measure(net, new)

    base_batches = batches(args.base_steps)
    fixed, later = batches(args.widen_batches), batches(args.steps)
    rows = []
    torch.manual_seed(seed)
    ref = InceptionV1(num_classes=len(CLASSES), **ARCH)
    opt = _optimizer(ref)
    sched = warmup_cosine(opt, args.base_steps + args.steps)
    _train(ref, opt, sched, base_batches, [])
    row = {"init": "unplanted", "optimizer": "-", "seed": seed}
    train_and_measure(ref, opt, sched, [], row)
    rows.append(row)

    torch.manual_seed(seed)
    base = InceptionV1(num_classes=len(CLASSES), widen={target: -cut}, **ARCH)
    opt = _optimizer(base)
    sched = warmup_cosine(opt, args.base_steps + args.steps)  # the base is scheduled for the whole budget
    _train(base, opt, sched, base_batches, [])
    base_state = opt.state_dict()
    old_names = [n for n, _ in base.named_parameters()]
    print(f"seed {seed}: base {args.base_steps} steps, val acc {_accuracy(base, data['val_x'], data['val_y']):.3f}")

    for init, handling, opts in args.arms:
        grow = {} if init == "none" else {target: cut}
        net = resize(base, grow, init=init if init != "none" else "zero",
                     generator=torch.Generator().manual_seed(seed))  # fmt: skip
        new = list(range(net.channels[target] - grow.get(target, 0), net.channels[target]))
        before = mean_loss(base, fixed)
        if init == "gradmax" and "frac" in opts:
            record = gradmax_init(net, fixed, new_units(net, {target: new}, 64, init), fraction=opts["frac"])
        else:
            record = init_units(net, {target: new}, fixed, init, 64) if init in ("gradmax", "tiny") else {}
        row = {"init": init, "optimizer": handling, "seed": seed, "loss_change_step0": mean_loss(net, fixed) - before,
               "fan_in_grad_step0": _fan_in_grad(net, target, fixed, new) if new else 0.0}  # fmt: skip
        if record:
            row["init_record"] = record[target]
        opt = _optimizer(net)
        masks = new_entry_masks(net, {target: new}) if new else {}
        if handling == "carry":
            growth = Growth(masks, opts.get("lr", 1.0), old_state=base_state, old_names=old_names,
                            step=args.base_steps, prefix="")  # fmt: skip
            offset = growth.attach(opt, net)
            sched = warmup_cosine(opt, args.base_steps + args.steps)
            growth.advance(sched)
            assert offset == args.base_steps and not growth.fresh
        else:
            Growth(masks, opts.get("lr", 1.0), prefix="").attach(opt, net)  # new_lr_scale only
            sched = warmup_cosine(opt, args.steps)
        row["optimizer"] = handling + "".join(f" {k}={v:g}" for k, v in opts.items())
        train_and_measure(net, opt, sched, new, row)
        rows.append(row)
        a, b = row[f"at{checkpoints[0]}"], row[f"at{args.steps}"]
        print(f"  {init:8s} {handling:5s} dloss0 {row['loss_change_step0']:+.5f} grad0 {row['fan_in_grad_step0']:.3g}"
              f" | {checkpoints[0]}: alive {a.get('alive', float('nan')):.2f}"
              f" fan-out {a.get('fan_out', float('nan')):.3f}"
              f" val acc {a['val_acc']:.3f} | {args.steps}: alive {b.get('alive', float('nan')):.2f} fan-out "
              f"{b.get('fan_out', float('nan')):.3f} (old {b.get('fan_out_old', float('nan')):.3f}) val acc "
              f"{b['val_acc']:.3f} train loss {b['train_loss']:.4f}", flush=True)  # fmt: skip
    print(f"  unplanted: val acc {rows[0][f'at{args.steps}']['val_acc']:.3f} "
          f"train loss {rows[0][f'at{args.steps}']['train_loss']:.4f}", flush=True)  # fmt: skip
    return rows


DEFAULT_ARMS = ["none/fresh", "none/carry"] + [f"{i}/{o}" for i in ("zero", "net2net", "gradmax", "tiny")
                                               for o in ("fresh", "carry")]  # fmt: skip


def parse_arm(spec: str) -> tuple[str, str, dict[str, float]]:
    """``init/optimizer[/lr=X][/frac=F]``: lr is ``model.new_lr_scale``, frac GradMax's fan-out fraction."""
    init, handling, *rest = spec.split("/")
    opts = {k: float(v) for k, v in (r.split("=", 1) for r in rest)}
    if init not in ("none", "zero", "net2net", "gradmax", "tiny") or handling not in ("fresh", "carry") or \
            set(opts) - {"lr", "frac"} or ("frac" in opts and init != "gradmax"):  # fmt: skip
        raise SystemExit(f"error: arm {spec!r}: init none|zero|net2net|gradmax|tiny, optimizer fresh|carry, "
                         f"options lr=X, frac=F (gradmax only)")  # fmt: skip
    return init, handling, opts


def recovered(arm: list[float], none: list[float], unplanted: list[float], draws: int = 4000) -> tuple[float, ...]:
    """Fraction of the plant's cost an arm recovers, mean(arm - none) / mean(unplanted - none), with a bootstrap
    95% interval over paired seeds (nan when the plant costs nothing on average)."""
    a, n, u = (np.asarray(v, dtype=float) for v in (arm, none, unplanted))

    def ratio(idx: np.ndarray) -> float:
        cost = float((u[idx] - n[idx]).mean())
        return float((a[idx] - n[idx]).mean()) / cost if cost != 0 else float("nan")

    point = ratio(np.arange(len(a)))
    if len(a) < 2:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(0)
    boots = np.array([ratio(rng.integers(0, len(a), len(a))) for _ in range(draws)])
    low, high = np.nanpercentile(boots, [2.5, 97.5])
    return point, float(low), float(high)


def summary(rows: list[dict], at: int) -> list[str]:
    """Per arm: mean val acc and fixed-set train loss, paired difference from none/fresh, recovered fraction."""
    by_arm: dict[tuple[str, str], dict[int, dict]] = {}
    for r in rows:
        by_arm.setdefault((r["init"], r["optimizer"]), {})[r["seed"]] = r[f"at{at}"]
    seeds = sorted(by_arm[("none", "fresh")])
    none, ref = by_arm[("none", "fresh")], by_arm[("unplanted", "-")]
    lines = [f"after {at} steps, {len(seeds)} paired seeds: plant cost (unplanted - none) val acc "
             f"{np.mean([ref[s]['val_acc'] - none[s]['val_acc'] for s in seeds]):+.4f}, train loss "
             f"{np.mean([ref[s]['train_loss'] - none[s]['train_loss'] for s in seeds]):+.4f}",
             "| init | optimizer | val acc | vs none [95% CI] | recovered acc [CI] | train loss | vs none [95% CI] "
             "| recovered loss [CI] |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (init, handling), arm in by_arm.items():
        cells = [init, handling]
        for key in ("val_acc", "train_loss"):
            values = [arm[s][key] for s in seeds]
            mean, low, high, _ = paired_interval([arm[s][key] - none[s][key] for s in seeds])
            point, rlow, rhigh = recovered(values, [none[s][key] for s in seeds], [ref[s][key] for s in seeds])
            cells += [f"{np.mean(values):.4f}", f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]",
                      f"{point:.2f} [{rlow:.2f}, {rhigh:.2f}]"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="conv2d0", help="the planted layer (a serial one: conv2d0, conv2d1, conv2d2)")
    p.add_argument("--cut", type=int, default=14, help="channels cut from --target and grown back")
    p.add_argument("--base-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--round-steps", type=int, default=150, help="the first checkpoint: one grow-loop round")
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--val-size", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--widen-batches", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--arms", nargs="+", default=DEFAULT_ARMS,
                   help="init/optimizer[/lr=X][/frac=F]; none/fresh is always run (the reference)")  # fmt: skip
    args = p.parse_args()
    if "none/fresh" not in args.arms:
        args.arms = ["none/fresh", *args.arms]
    args.arms = [parse_arm(a) for a in args.arms]  # a bad arm fails here, before any training
    torch.set_num_threads(args.threads)
    started = time.process_time()

    dm = WorldDataModule(classes=CLASSES, train_size=args.train_size, val_size=args.val_size, test_size=8,
                         batch_size=args.batch_size, seed=0)  # fmt: skip
    dm.setup("fit")
    train_x, train_y = dm.splits["train"].images, dm.splits["train"].labels.long()
    data = {"train_x": train_x, "train_y": train_y, "fixed_x": train_x[:1024], "fixed_y": train_y[:1024],
            "val_x": dm.splits["val"].images, "val_y": dm.splits["val"].labels.long()}  # fmt: skip
    rows = []
    for seed in args.seeds:
        rows += _seed(args, seed, data)
        if args.json:  # after every seed, so a killed run keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                            indent=1))  # fmt: skip
    for at in sorted({min(args.round_steps, args.steps), args.steps}):
        print("\n".join(summary(rows, at)))
    print(f"cpu {time.process_time() - started:.0f} s")


if __name__ == "__main__":
    main()
