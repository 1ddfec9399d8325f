"""Do new units learn? Per widen init (zero, net2net, gradmax, tiny) and optimizer handling (fresh, carried), on a
planted stem bottleneck grown back.

    python benchmarks/growth_inits.py                       # ~5 CPU-min at the defaults
    python benchmarks/growth_inits.py --base-steps 600 --steps 600 --train-size 8000 --json runs/inits.json

The base is the tiny InceptionV1 (width 0.25, batch norm) with conv2d0 cut to 2 channels (``experiment=
planted_stem``), trained ``--base-steps`` on the curvature world at reduced size. conv2d0 is then grown back by 14
units with each init (gradmax/tiny on ``--widen-batches`` fixed training batches) and trained ``--steps`` more,
either with a fresh optimizer and a schedule restarted at peak (``fresh``, today's continued run) or with the
base's optimizer state carried through the unit maps and its schedule continued (``carry``). A ``none`` arm
trains the same steps without growing. Same batches in every arm (one seed).

Reported per arm: the step-0 loss change on the fixed batches (eval mode), the new fan-in's gradient norm at step
0 (training mode, the mean cross-entropy of the fixed batches: what the optimizer sees), and after 100 and
``--steps`` steps the fraction of new units alive (non-zero on >= 1% of the validation images) and their mean
fan-out norm (the existing units' in brackets), the validation accuracy and the mean training loss of the last
50 steps.

Why a script and not a test: it trains 9 arms (minutes of CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.data.world_datamodule import WorldDataModule
from harness.grow.carry import Growth, new_entry_masks
from harness.grow.new_units import mean_loss, prepare
from harness.grow.widen_init import init_units
from harness.models import InceptionV1, resize
from harness.models.hooks import capture, eval_mode
from harness.module import warmup_cosine

CLASSES = ["arc_r4", "arc_r7", "arc_r12", "arc_r20", "line", "corner", "wave", "texture"]  # data=world_curvature
ARCH = {"width": 0.25, "batch_norm": True, "lrn": False, "last_layer": "mixed4b", "dropout": 0.0}
TARGET, CUT = "conv2d0", 14
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
def _units(net: nn.Module, x: torch.Tensor, new: list[int]) -> dict[str, float]:
    """Fraction of new units alive (non-zero on >= 1% of images) and mean fan-out norms (new, old)."""
    with eval_mode(net), capture(net, [TARGET]) as cache:
        net(prepare(x))
        act = cache[TARGET].float()
    on = (act.amax(dim=(2, 3)) > 0).float().mean(0)  # per unit: fraction of images where it fires
    alive = float((on[new] >= 0.01).float().mean())
    consumer = net.hook_points()["conv2d1"].conv.weight
    norms = consumer.transpose(0, 1).flatten(1).norm(dim=1)
    old = [u for u in range(len(norms)) if u not in new]
    return {"alive": alive, "fan_out": float(norms[new].mean()), "fan_out_old": float(norms[old].mean())}


def _fan_in_grad(net: nn.Module, batches, new: list[int]) -> float:
    net.train()
    state = copy.deepcopy(net.state_dict())  # training-mode forward moves batch-norm statistics: put them back
    total = sum(len(y) for _, y in batches)
    loss = sum(F.cross_entropy(net(prepare(x)), y, reduction="sum") for x, y in batches) / total
    weight = net.hook_points()[TARGET].conv.weight
    grad = torch.autograd.grad(loss, weight)[0][new]
    net.load_state_dict(state)
    return float(grad.norm())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--widen-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.process_time()

    dm = WorldDataModule(classes=CLASSES, train_size=args.train_size, val_size=500, test_size=8,
                         batch_size=args.batch_size, seed=0)  # fmt: skip
    dm.setup("fit")
    gen = torch.Generator().manual_seed(args.seed)
    train_x, train_y = dm.splits["train"].images, dm.splits["train"].labels.long()

    def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.randint(len(train_y), (n, args.batch_size), generator=gen)
        return [(train_x[i], train_y[i]) for i in idx]

    val_x, val_y = dm.splits["val"].images, dm.splits["val"].labels.long()
    torch.manual_seed(args.seed)
    base = InceptionV1(num_classes=len(CLASSES), widen={TARGET: -CUT}, **ARCH)
    opt = _optimizer(base)
    sched = warmup_cosine(opt, args.base_steps + args.steps)  # the base is scheduled for the whole budget
    _train(base, opt, sched, batches(args.base_steps), [])
    base_state = opt.state_dict()
    old_names = [n for n, _ in base.named_parameters()]
    fixed, later = batches(args.widen_batches), batches(args.steps)
    print(f"base: {args.base_steps} steps, val acc {_accuracy(base, val_x, val_y):.3f}")

    rows = []
    arms = [("none", "fresh"), ("none", "carry")] + [(i, o) for i in ("zero", "net2net", "gradmax", "tiny")
                                                     for o in ("fresh", "carry")]  # fmt: skip
    for init, handling in arms:
        grow = {} if init == "none" else {TARGET: CUT}
        net = resize(base, grow, init=init if init != "none" else "zero",
                     generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
        new = list(range(net.channels[TARGET] - grow.get(TARGET, 0), net.channels[TARGET]))
        before = mean_loss(base, fixed)
        record = init_units(net, {TARGET: new}, fixed, init, 64) if init in ("gradmax", "tiny") else {}
        row = {"init": init, "optimizer": handling, "loss_change_step0": mean_loss(net, fixed) - before,
               "fan_in_grad_step0": _fan_in_grad(net, fixed, new) if new else 0.0}  # fmt: skip
        if record:
            row["init_record"] = record[TARGET]
        opt = _optimizer(net)
        if handling == "carry":
            growth = Growth(new_entry_masks(net, {TARGET: new}) if new else {}, old_state=base_state,
                            old_names=old_names, step=args.base_steps, prefix="")  # fmt: skip
            offset = growth.attach(opt, net)
            sched = warmup_cosine(opt, args.base_steps + args.steps)
            growth.advance(sched)
            assert offset == args.base_steps and not growth.fresh
        else:
            sched = warmup_cosine(opt, args.steps)
        losses: list[float] = []
        for upto in sorted({min(100, args.steps), args.steps}):
            _train(net, opt, sched, later[len(losses) : upto], losses)
            row[f"at{upto}"] = {**(_units(net, val_x, new) if new else {}), "val_acc": _accuracy(net, val_x, val_y),
                                "train_loss": sum(losses[-50:]) / len(losses[-50:])}  # fmt: skip
        rows.append(row)
        a, b = row[f"at{min(100, args.steps)}"], row[f"at{args.steps}"]
        print(f"{init:8s} {handling:5s} dloss0 {row['loss_change_step0']:+.5f} grad0 {row['fan_in_grad_step0']:.3g} | "
              f"100: alive {a.get('alive', float('nan')):.2f} fan-out {a.get('fan_out', float('nan')):.3f} | "
              f"{args.steps}: alive {b.get('alive', float('nan')):.2f} fan-out {b.get('fan_out', float('nan')):.3f} "
              f"(old {b.get('fan_out_old', float('nan')):.3f}) val acc {b['val_acc']:.3f} "
              f"train loss {b['train_loss']:.4f}", flush=True)  # fmt: skip
    print(f"cpu {time.process_time() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
