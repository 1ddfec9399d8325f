"""Data supply: how fast the world is drawn, and how much of a training step waits for its batch.

Why: the harness pre-generates the world and serves batches by index (WorldDataModule); this checks
that the loader keeps a step fed (`data_wait_fraction` near 0) and how generation compares with what
training consumes (generation happens once per run, so it only needs to be fast enough for setup).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from training import BATCH, LR, WEIGHT_DECAY, default_net

from harness.data import WorldDataModule
from harness.data.world import World


def generation_images_per_s(n: int, with_masks: bool, size: int = 64, repeats: int = 2) -> float:
    """Best-of-`repeats` images/s of `World.generate` (best: other load on the box only adds time)."""
    world = World(image_size=size)
    world.generate(min(n, 64), seed=0, with_masks=with_masks)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        world.generate(n, seed=r + 1, with_masks=with_masks)
        times.append(time.perf_counter() - start)
    return n / min(times)


def data_wait(steps: int) -> dict[str, float]:
    """Time inside the loader's `__next__` over total step time, iterating `train_dataloader()` as Lightning does."""
    dm = WorldDataModule(train_size=steps * BATCH, val_size=BATCH, test_size=BATCH)
    dm.setup("fit")
    net = default_net().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.CrossEntropyLoss()
    it = iter(dm.train_dataloader())
    wait = total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        x, y = next(it)
        got = time.perf_counter()
        x = x.float().div_(255.0).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        wait += got - start
        total += time.perf_counter() - start
    return {"data_wait_fraction": wait / total, "data_wait_s": wait, "data_step_total_s": total}


def data_benchmark(gen_n: int, steps: int, train_images_per_s: float) -> dict[str, Any]:
    """Generation images/s (64 px, with and without masks) against training consumption, plus the wait fraction."""
    plain = generation_images_per_s(gen_n, with_masks=False)
    masks = generation_images_per_s(gen_n, with_masks=True)
    return {
        "generation_n": gen_n,
        "generation_images_per_s": plain,
        "generation_masks_images_per_s": masks,
        "training_consumption_images_per_s": train_images_per_s,
        "generation_over_consumption": plain / train_images_per_s,
        "wait_steps": steps,
        **data_wait(steps),
    }
