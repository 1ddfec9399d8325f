"""Roofline: what fraction of this machine's fp32 matmul peak the training loop reaches.

Why: images/s alone does not say whether a small CNN is compute-bound or overhead-bound; FLOPs per
image x images/s over a measured peak does (a tiny model on 2 cores is expected far below peak).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from training import default_net


def train_flops_per_image(batch: int = 32, size: int = 64) -> float:
    """Forward + backward FLOPs of the default model per image (FlopCounterMode counts 2 per multiply-add)."""
    net = default_net().to(memory_format=torch.channels_last).train()
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 8, (batch,))
    counter = FlopCounterMode(display=False)
    with counter:
        nn.functional.cross_entropy(net(x), y).backward()
    return counter.get_total_flops() / batch


def matmul_peak_flops(n: int = 2048, reps: int = 5) -> float:
    """Best-of-`reps` FLOP/s of an n x n fp32 `torch.mm` (the practical peak of this CPU and thread count)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def roofline_benchmark(train_images_per_s: float, n: int, reps: int) -> dict[str, Any]:
    flops = train_flops_per_image()
    peak = matmul_peak_flops(n, reps)
    achieved = flops * train_images_per_s
    return {
        "train_flops_per_image": flops,
        "matmul_n": n,
        "matmul_peak_gflops": peak / 1e9,
        "achieved_gflops": achieved / 1e9,
        "peak_fraction": achieved / peak,
    }
