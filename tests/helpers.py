"""Shared test helpers: toy models for probe tests (one named layer with hand-set weights, so every answer is
known), the one factory of synthetic run records, and small settings that several test modules share.

Why one module: the probe tests (ablation, examples, featvis, lineage) each need "a network with one
layer called `layer` whose units compute a chosen function of the colour channels"; written once here,
a change to the model interface probes rely on (`hook_points`, `channels`) is made in one place.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

from harness.facts.conf_dir import CONF_DIR
from harness.models.inception_v1 import ConvReLU


class OneLayerNet(nn.Module):
    """`layer` = ConvReLU(3 -> units, kernel) with the given weights (None: its random init), mean-pooled,
    then an optional linear head with `classes` outputs (random init unless `head` gives weight and bias).

    Usage: ``OneLayerNet([[1.0, 0, 0], [0, 1.0, 0]], bias=[0.0, 0.0], classes=2)``  # unit 0 = red, 1 = green
    """

    def __init__(
        self,
        weight: Sequence | torch.Tensor | None = None,
        bias: Sequence[float] | float | None = None,
        units: int | None = None,
        kernel: int = 1,
        classes: int | None = None,
        head: tuple[Sequence, Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        n = int(w.shape[0]) if w is not None else int(units)
        self.unit = ConvReLU(3, n, kernel)
        self.fc = nn.Linear(n, classes) if classes else None
        with torch.no_grad():
            if w is not None:  # [units, 3] colour weights, the same at every kernel position, or a full kernel
                self.unit.conv.weight.copy_(w.view(n, 3, 1, 1).expand(n, 3, kernel, kernel) if w.dim() == 2 else w)
            if bias is not None:
                self.unit.conv.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).expand(n))
            if head is not None:
                self.fc.weight.copy_(torch.as_tensor(head[0], dtype=torch.float32))
                self.fc.bias.copy_(torch.as_tensor(head[1], dtype=torch.float32))

    @property
    def channels(self) -> dict[str, int]:
        return {"layer": self.unit.conv.out_channels}

    def hook_points(self) -> dict[str, nn.Module]:
        return {"layer": self.unit}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.unit(x).mean(dim=(2, 3))
        return pooled if self.fc is None else self.fc(pooled)


class TinyResNet(nn.Module):
    """A stem, one residual block, a strided conv and a two-layer head, for growth probes on a traced graph.

    Widenable: ``block.conv1`` (read by ``block.conv2`` through batch norm and ReLU), ``conv3`` (read by ``fc1``
    through ReLU, a 2x2 average pool and a flatten: 4 columns per unit) and ``fc1`` (read by ``fc2`` through
    ReLU). ``stem`` and ``block.conv2`` write the residual stream, ``fc2`` is the output: refused.
    """

    def __init__(self, classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.block = nn.Module()
        self.block.conv1, self.block.bn1 = nn.Conv2d(width, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.block.conv2, self.block.bn2 = nn.Conv2d(6, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.act = nn.ReLU()
        self.conv3 = nn.Conv2d(width, 5, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1, self.fc2 = nn.Linear(5 * 4, 7), nn.Linear(7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.stem(x)))
        y = self.act(self.block.bn1(self.block.conv1(x)))
        x = torch.relu(x + self.block.bn2(self.block.conv2(y)))
        x = self.pool(F.relu(self.conv3(x))).flatten(1)
        return self.fc2(self.act(self.fc1(x)))


class ChannelsLastNet(nn.Module):
    """A conv, then a ConvNeXt-style channels-last MLP (permute, linear, GELU, linear, permute back), a mean and
    a head: every layer but the head is widenable, the MLP's linears read the last axis."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.fc_a, self.gelu, self.fc_b = nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 6)
        self.head = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).permute(0, 2, 3, 1)
        x = self.fc_b(self.gelu(self.fc_a(x))).permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


class TwoConvNet(nn.Module):
    """conv ``a`` (3 -> ``a`` units, 1x1) -> ReLU -> conv ``b`` (-> ``b`` units, 1x1) -> ReLU -> mean -> linear head:
    two widen targets in series, for growth signals with a planted best location (``a`` and ``b`` by module path)."""

    def __init__(self, a: int = 4, b: int = 4, classes: int = 2) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, a, 1), nn.Conv2d(a, b, 1), nn.Linear(b, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.b(F.relu(self.a(x)))).mean((2, 3)))


class GatedNet(nn.Module):
    """A conv whose output is scaled by a squeeze-excitation gate: widening ``a`` or ``excite`` grows both (the
    product has the new channels on both sides), which gradmax cannot linearise; ``squeeze`` and ``b`` it can."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.a, self.squeeze, self.excite = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1), nn.Conv2d(2, 4, 1)
        self.b, self.head = nn.Conv2d(4, 3, 1), nn.Linear(3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        x = x * torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        return self.head(torch.relu(self.b(x)).mean((2, 3)))


# A training job small enough for subprocess sweep tests (Optuna storage, SLURM): 64 images, one epoch,
# no logger, probes or progress bar. Each test adds what its own setting needs.
TINY_JOB = [
    "data.train_size=64",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=16",
    "logger=none",
    "probes=none",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
]


def probe_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """`conf/probe.yaml` composed with `overrides`, its output dir `<tmp_path>/run`, set as the current Hydra config."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("probe", return_hydra_config=True, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


# Small probe settings: every default probe runs, each at a fraction of its default cost.
SMALL_PROBES = [
    "image_size=32",
    "probing.probe_set_size=16",
    "probing.budget_s=null",
    "probes.curves.orientations=36",
    "probes.curves.radii=[0.1,0.2,0.3,0.45]",
    "probes.featvis.steps=2",
    "probes.featvis.default_units=2",
    "probes.examples.k=2",
    "probes.examples.default_units=2",
]


def write_record(root: Path, name: str, *, variant: str = "base", seed: int = 0, status: str = "finished",
                 metrics: dict[str, Any] | None = None, test: dict[str, Any] | None = None,
                 widen: dict[str, int] | None = None, probes: dict[str, Any] | None = None,
                 error: str | None = None, params: int = 1000, channels: dict[str, int] | None = None,
                 tables: dict[str, list[dict[str, Any]]] | None = None, config: dict[str, Any] | None = None,
                 model: dict[str, Any] | None = None, **fields: Any) -> Path:  # fmt: skip
    """Write `<root>/<name>/record.json` shaped like harness.run.records.RunRecord output (synthetic runs for
    harness-compare, -suggest, -oracle, -dashboard); `tables`: probe -> per-unit rows, written as the probe's units
    CSV and listed in the record. `config` and `model` replace the record's default config and model facts (built
    from `widen`, `params`, `channels`); `fields` are further top-level keys (`started`, `classes`, `epochs`, …)."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    probes = dict(probes or {})
    for probe, rows in (tables or {}).items():
        (run / "probes").mkdir(exist_ok=True)
        path = run / "probes" / f"{probe}_units.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
        entry = probes.setdefault(probe, {"scalars": {}, "error": None, "skipped": None, "files": {}})
        entry.setdefault("files", {})["table/units"] = f"probes/{probe}_units.csv"
    facts = {"params/total": params, "params/trainable": params, "channels": channels or {"mixed3b": 120}}
    record = {
        "schema": 1,
        "status": status,
        "variant": variant,
        "seed": seed,
        "config": {"model": {"widen": widen or {}, "insert": []}} if config is None else config,
        "metrics": metrics or {},
        "test": test or {},
        "probes": probes,
        "model": facts if model is None else model,
        "wall_seconds": 12.5,
    }
    if error:
        record["error"] = error
    record.update(fields)
    (run / "record.json").write_text(json.dumps(record))
    return run


# A synthetic harness-compare experiment (test_compare, test_compare_report, test_wandb_dashboard).
BASE = "data.batch_size=32,probes=[curves,cka],trainer.max_epochs=2"
WIDE = "data.batch_size=32,model.widen.mixed3b_5x5=8,probes=[curves,cka],trainer.max_epochs=2"
PLANTED = "curves/mixed3b/detectors"  # baseline 2,3,4 (sd 1) vs 12,13,14: +10 sd


def make_experiment(root: Path) -> Path:
    """2 variants x 3 seeds (+ one failed and one running run); the wide variant is listed first on purpose."""
    nulls = {"null/a": ([0.2, -0.5, 0.9], [0.1, 0.8, -0.4])}
    job = 0
    for seed in range(3):
        for variant, is_wide in ((WIDE, True), (BASE, False)):
            side = int(is_wide)
            metrics: dict[str, Any] = {
                "lr-AdamW": 0.001,
                "val/acc": [0.50, 0.52, 0.54][seed] + 0.01 * side,
                PLANTED: [2.0, 3.0, 4.0][seed] + 10.0 * side,
                "curves/mixed3a/detectors": [1.0, 2.0, 1.0][seed],
                "curves/seconds": 1.5,
                "cka/mixed3a/cka_to_reference": [0.9, 0.8, 0.85][seed] - 0.1 * side,
                "cka/mixed3b/cka_to_reference": [0.7, 0.6, 0.65][seed],
                "dissect/mixed3b/unique_concepts": [3.0, 4.0, 5.0][seed],
                **{k: v[side][seed] for k, v in nulls.items()},
            }
            if not is_wide and seed == 0:
                del metrics["dissect/mixed3b/unique_concepts"]  # missing in one baseline run
            if is_wide and seed == 1:
                metrics["dissect/mixed3b/unique_concepts"] = None  # NaN stored as null
            test = {"test/acc": [0.60, 0.62, 0.64][seed] + [0.0, -0.01, 0.02][seed] * side,
                    "test/acc/line": 0.7, "test/acc/arc": [0.1, 0.2, 0.3][seed]}  # fmt: skip
            probes = {}
            if is_wide:
                scalars = {"mixed3b_5x5/added/dead": 1.0, "mixed3b_5x5/added/other": 7.0}
                probes = {"lineage": {"scalars": scalars, "error": None, "skipped": None, "files": {}}}
            write_record(root, str(job), variant=variant, seed=seed, metrics=metrics, test=test, probes=probes,
                         widen={"mixed3b_5x5": 8 if is_wide else 0}, params=1100 if is_wide else 1000)  # fmt: skip
            job += 1
    write_record(root, str(job), variant=WIDE, seed=3, status="failed", error="RuntimeError: CUDA out of memory",
                 metrics={PLANTED: 1000.0, "val/acc": 0.0}, widen={"mixed3b_5x5": 8})  # fmt: skip
    write_record(root, str(job + 1), variant=BASE, seed=3, status="running", metrics={"val/acc": 0.1, PLANTED: -50.0})
    return root


def chromium() -> str:
    """The path of a Chromium binary for headless rendering tests; skips the test where there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium binary on PATH (apt-get install chromium)")
