"""The runner isolates failing probes, respects its budget and publishes under `<probe>/<layer>/<metric>`."""

from __future__ import annotations

import json

import numpy as np
import torch

from harness.data import World
from harness.models import InceptionV1
from harness.probes import Probe, ProbeContext, ProbeResult, ProbeSet
from harness.probes.runner import publish, run_probes, save_outcomes


class Const(Probe):
    name = "const"
    cheap = True

    def run(self, ctx: ProbeContext) -> ProbeResult:
        acts = ctx.activations()
        return ProbeResult(
            scalars={f"{layer}/units": float(a.shape[1]) for layer, a in acts.items()},
            tables={"units": [{"layer": "conv2d0", "unit": 0, "value": 1.5}]},
            images={"grid": np.zeros((4, 4, 3), dtype=np.uint8)},
        )


class Broken(Probe):
    name = "broken"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        raise RuntimeError("planted failure")


class Recorder:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics, step) -> None:
        self.metrics.update(metrics)


def _ctx() -> ProbeContext:
    torch.manual_seed(0)
    net = InceptionV1(num_classes=8, width=0.125, batch_norm=True, lrn=False, last_layer="mixed3a")
    return ProbeContext(net, ["conv2d0", "mixed3a"], ProbeSet.from_world(World(image_size=32), n=16, seed=0))


def test_failure_is_isolated_and_logged(tmp_path) -> None:
    outcomes = run_probes({"broken": Broken(), "const": Const()}, _ctx())
    assert outcomes[0].error == "RuntimeError: planted failure" and outcomes[1].result is not None
    logger = Recorder()
    publish(outcomes, [logger], step=0)
    assert logger.metrics["broken/failed"] == 1.0
    assert logger.metrics["const/mixed3a/units"] == 32.0 and "const/failed" not in logger.metrics
    save_outcomes(outcomes, tmp_path)
    assert (tmp_path / "probes" / "const_units.csv").read_text().startswith("layer,unit,value")
    assert (tmp_path / "probes" / "const_grid.png").is_file()
    json.dumps(outcomes[1].files)


def test_budget_skips_the_rest_and_cheap_only_filters() -> None:
    outcomes = run_probes({"const": Const(), "again": Const()}, _ctx(), budget_s=-1.0)
    assert [o.skipped is not None for o in outcomes] == [True, True]
    assert [o.name for o in run_probes({"broken": Broken(), "const": Const()}, _ctx(), cheap_only=True)] == ["const"]


def test_activations_are_captured_once_and_shared() -> None:
    ctx = _ctx()
    calls = []
    handle = ctx.model.register_forward_pre_hook(lambda *a: calls.append(1))  # forward_until ends early
    try:
        ctx.activations()
        ctx.activations(["conv2d0"])
    finally:
        handle.remove()
    assert len(calls) == 1  # 16 images, batch 128: one pass served both requests


def test_cached_activations_equal_one_plain_pass() -> None:
    """Batches (5 + 5 + 5 + 1 images) land in one NCHW-contiguous float32 tensor per layer, in order."""
    from harness.models.hooks import run_with_cache

    ctx = _ctx()
    ctx.batch_size = 5
    acts = ctx.activations()
    ctx.model.eval()
    _, expected = run_with_cache(ctx.model, ctx.probe_set.images, ["conv2d0", "mixed3a"])
    for name, value in acts.items():
        assert value.dtype == torch.float32 and value.is_contiguous() and value.shape == expected[name].shape
        assert torch.allclose(value, expected[name], atol=1e-5), name


class Reader(Probe):
    name = "reader"
    order = 1

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return ProbeResult(scalars={"seen": float("const" in ctx.results)})


def test_consumers_run_after_the_probes_they_read() -> None:
    outcomes = run_probes({"reader": Reader(), "const": Const()}, _ctx())
    assert [o.name for o in outcomes] == ["const", "reader"]
    assert outcomes[1].result.scalars["seen"] == 1.0
