"""Training throughput: the harness against a plain PyTorch loop, a naive loop, and three precisions.

Why: the harness (Hydra + Lightning + callbacks + wandb) must cost almost nothing over the loop a
user would write by hand with the same settings, and its defaults (pre-generated uint8 world,
channels_last) must beat the obvious first attempt (fp32 NCHW, images drawn inside each step).

Harness images/s is the run's own `perf/train_images_per_s` (ThroughputLogger: first batch fetch to
last batch end of the epoch, data loading included, setup and validation excluded); the plain loops
are timed over the same span, so the two numbers compare like for like.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from harness.data import WorldDataModule
from harness.data.world import World
from harness.models import InceptionV1
from harness.run.module import warmup_cosine

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
BATCH = 128
LR, WEIGHT_DECAY = 0.004, 0.0005  # conf/module/default.yaml


def default_net(seed: int = 0) -> nn.Module:
    """The default tiny model (conf/model/inception_v1_tiny.yaml), seeded."""
    torch.manual_seed(seed)
    return InceptionV1(num_classes=8, width=0.25, batch_norm=True, lrn=False, last_layer="mixed4b")


@contextlib.contextmanager
def offline_wandb(root: Path) -> Iterator[None]:
    """wandb offline and silent, its files under `root`; the caller's environment is restored after."""
    saved = dict(os.environ)
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY"):
        os.environ.pop(key, None)
    os.environ.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_CONFIG_DIR=str(root / "wandb_config"),
        WANDB_CACHE_DIR=str(root / "wandb_cache"),
        WANDB_DATA_DIR=str(root / "wandb_data"),
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def harness_cfg(overrides: list[str], out_dir: Path) -> DictConfig:
    """Compose conf/train.yaml as `harness-train` would (same approach as tests/conftest.py's make_cfg)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir.parent)
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_harness(overrides: list[str], out_dir: Path) -> tuple[dict[str, float], float]:
    """`harness.train.train` with wandb offline; returns (metrics, wall seconds of the whole call)."""
    from harness.train import train

    cfg = harness_cfg(overrides, out_dir)
    with offline_wandb(out_dir.parent):
        start = time.perf_counter()
        metrics, _ = train(cfg)
        wall = time.perf_counter() - start
    GlobalHydra.instance().clear()
    return metrics, wall


def harness_images_per_s(steps: int, tmp: Path, tag: str) -> float:
    """One harness run of exactly `steps` batches (train_size = steps x 128: one epoch, no ragged batch)."""
    overrides = [
        # fp32 like the plain loop it is compared with (the default precision follows the CPU: harness/run/precision.py)
        "trainer.precision=32-true",
        "probes=none", f"trainer.max_steps={steps}", "trainer.max_epochs=1", "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "test=false",
        f"data.train_size={steps * BATCH}", f"data.val_size={BATCH}", f"data.test_size={BATCH}",
    ]
    metrics, _ = run_harness(overrides, tmp / tag)
    return float(metrics["perf/train_images_per_s"])


def train_plain(
    loader: Any, steps: int, channels_last: bool = True, bf16: bool = False, seed: int = 0, metrics: bool = False
) -> tuple[float, nn.Module]:
    """A hand-written loop with the harness defaults: AdamW, per-step warm-up + cosine, uint8 -> float/255.

    Returns (images/s, the trained net). `metrics` adds the per-step work the harness's module does besides
    training (train accuracy update): it splits the harness/plain gap into "more work per step" and
    "framework overhead".
    """
    net = default_net(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = warmup_cosine(opt, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    acc = MulticlassAccuracy(8, average="micro") if metrics else None
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    images, done = 0, 0
    start = time.perf_counter()
    for x, y in loader:
        x = x.float().div_(255.0).contiguous(memory_format=fmt)
        with autocast:
            logits = net(x)
            loss = loss_fn(logits, y)
        if acc is not None:
            acc.update(logits.argmax(dim=1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        images += len(y)
        done += 1
        if done >= steps:
            break
    return images / (time.perf_counter() - start), net


def plain_images_per_s(
    loader: Any, steps: int, channels_last: bool = True, bf16: bool = False, seed: int = 0, metrics: bool = False
) -> float:
    """Images/s of `train_plain`."""
    return train_plain(loader, steps, channels_last, bf16, seed, metrics)[0]


def accuracy(net: nn.Module, loader: Any, channels_last: bool, bf16: bool) -> float:
    """Top-1 accuracy of `net` over `loader`, evaluated in the precision and layout it was trained in."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    correct = total = 0
    with torch.no_grad(), autocast:
        net.eval()
        for x, y in loader:
            correct += int((net(x.float().div_(255.0).contiguous(memory_format=fmt)).argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


PRECISIONS = {  # name -> (channels_last, bf16)
    "fp32_contiguous": (False, False),
    "fp32_channels_last": (True, False),
    "bf16_channels_last": (True, True),
}


def precision_benchmark(speed_steps: int, budget_steps: int, val_size: int) -> dict[str, Any]:
    """Per precision: images/s over `speed_steps`, and validation accuracy after `budget_steps` training steps.

    The same seed, initial weights and batch order for every precision, so the accuracies differ only by
    the arithmetic; the seconds that budget took (`budget_seconds`) show what each precision costs for it.
    """
    dm = WorldDataModule(train_size=max(speed_steps, budget_steps) * BATCH, val_size=val_size, test_size=BATCH)
    dm.setup("fit")
    out: dict[str, Any] = {"images_per_s": {}, "accuracy": {}, "budget_seconds": {}, "budget_steps": budget_steps,
                           "val_size": val_size}  # fmt: skip
    for name, (channels_last, bf16) in PRECISIONS.items():
        out["images_per_s"][name] = plain_images_per_s(dm.train_dataloader(), speed_steps, channels_last, bf16)
        start = time.perf_counter()
        _, net = train_plain(dm.train_dataloader(), budget_steps, channels_last, bf16)
        out["budget_seconds"][name] = time.perf_counter() - start
        out["accuracy"][name] = accuracy(net, dm.val_dataloader(), channels_last, bf16)
    return out


def naive_images_per_s(steps: int, seed: int = 0) -> float:
    """The obvious first loop: fp32 NCHW, a fresh World batch drawn inside every step."""
    world = World(image_size=64)
    net = default_net(seed).train()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for step in range(steps):
        batch = world.generate(BATCH, seed=step, with_masks=False)
        loss = loss_fn(net(batch.images.float() / 255.0), batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * BATCH / (time.perf_counter() - start)


def training_benchmark(
    steps: int, naive_steps: int, precision_steps: int, repeats: int = 2, budget_steps: int = 100, val_size: int = 1024
) -> dict[str, Any]:
    """(1) plain vs harness, interleaved, medians; naive loop; (2) fp32 / channels_last / bf16 images/s and
    accuracy after `budget_steps`."""
    dm = WorldDataModule(train_size=steps * BATCH, val_size=BATCH, test_size=BATCH)  # the harness's own data
    dm.setup("fit")
    plain_images_per_s(dm.train_dataloader(), min(steps, 5))  # untimed: oneDNN primitives, allocator
    plain, harness = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for r in range(repeats):
            plain.append(plain_images_per_s(dm.train_dataloader(), steps, seed=r))
            harness.append(harness_images_per_s(steps, Path(tmp), f"harness{r}"))
    plain_metrics = plain_images_per_s(dm.train_dataloader(), steps, metrics=True)
    naive = naive_images_per_s(naive_steps)
    budget = precision_benchmark(precision_steps, budget_steps, val_size)
    precision = budget["images_per_s"]
    plain_med, harness_med = statistics.median(plain), statistics.median(harness)
    # Each harness run against the plain run just before it: the VM's speed drifts over minutes, and a ratio
    # within a pair cancels the drift that a ratio of medians keeps.
    pair_ratios = [h / p for p, h in zip(plain, harness)]
    return {
        "steps": steps,
        "batch_size": BATCH,
        "plain_images_per_s": plain,
        "harness_images_per_s": harness,
        "plain_images_per_s_median": plain_med,
        "harness_images_per_s_median": harness_med,
        "plain_metrics_images_per_s": plain_metrics,
        "naive_images_per_s": naive,
        "naive_steps": naive_steps,
        "train_ratio_vs_plain": statistics.median(pair_ratios),
        "pair_ratios": pair_ratios,
        "ratio_of_medians": harness_med / plain_med,
        "default_speedup_vs_naive": harness_med / naive,
        "precision_steps": precision_steps,
        "precision_images_per_s": precision,
        "precision_accuracy": budget["accuracy"],
        "precision_budget": {k: budget[k] for k in ("budget_steps", "budget_seconds", "val_size")},
        "bf16_speedup": precision["bf16_channels_last"] / precision["fp32_channels_last"],
        "channels_last_speedup": precision["fp32_channels_last"] / precision["fp32_contiguous"],
        "bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "harness_measure": "perf/train_images_per_s logged by ThroughputLogger",
    }
