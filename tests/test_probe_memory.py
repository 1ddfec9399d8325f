"""`probing.max_activation_gb`: default layers that would not fit are left out (largest first), a capture of named
layers over the limit fails its probe with one line, and a round under the limit is unchanged (controls)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.probes import ProbeContext, ProbeSet
from harness.probes.activations import ActivationStats
from harness.probes.memory import GB, ActivationMemoryError, fit_layers, layer_bytes, limit_bytes
from harness.probes.runner import run_probes
from harness.run.records import RunRecord
from tests.helpers import SMALL_PROBES, probe_cfg

# Per image at 8 x 8 px: "0" 16 ch x 8 x 8, "2" 4 ch x 4 x 4, "4" 8 ch x 2 x 2 (x 4 bytes).
SIZES = {"0": 16 * 64 * 4, "2": 4 * 16 * 4, "4": 8 * 4 * 4}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 4, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, stride=2), nn.ReLU(),
    )  # fmt: skip


def _probe_set(n: int = 10) -> ProbeSet:
    images = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return ProbeSet(images=images, labels=torch.zeros(n, dtype=torch.long), classes=("a",))


def test_layer_bytes_are_the_float32_size_of_one_image() -> None:
    assert layer_bytes(_net(), ["0", "2", "4"], torch.rand(1, 3, 8, 8)) == SIZES


def test_default_layers_over_the_limit_are_left_out_largest_first(caplog) -> None:
    image, n = torch.rand(1, 3, 8, 8), 10
    total = sum(SIZES.values()) * n
    # room for everything but "0" (the largest per image): "0" goes, "2" and "4" stay, in their order
    limit_gb = (total - SIZES["0"] * n + 1) / GB
    with caplog.at_level(logging.WARNING, logger="harness.probes.memory"):
        kept, why = fit_layers(_net(), ["0", "2", "4"], image, n, limit_gb)
    assert kept == ["2", "4"] and why.startswith("left out default probe layer(s) 0 ")
    assert "probing.max_activation_gb" in caplog.text
    # controls: a limit that holds them all, and no limit, keep every layer and say nothing
    assert fit_layers(_net(), ["0", "2", "4"], image, n, (total + 1) / GB) == (["0", "2", "4"], None)
    assert fit_layers(_net(), ["0", "2", "4"], image, n, None) == (["0", "2", "4"], None)
    # a limit below every layer still keeps one, the smallest
    assert fit_layers(_net(), ["0", "2", "4"], image, n, 1e-12)[0] == ["4"]
    with pytest.raises(ConfigError, match="max_activation_gb"):
        limit_bytes(0)


def test_a_capture_over_the_limit_fails_its_probe_with_one_line_and_the_round_goes_on(caplog) -> None:
    n = 10
    needed = sum(SIZES.values()) * n
    ctx = ProbeContext(_net(), ["0", "2", "4"], _probe_set(n), max_activation_bytes=needed - 1)
    with pytest.raises(ActivationMemoryError, match=r"3 layer\(s\) over 10 probe images .*probing\.layers"):
        ctx.activations()
    assert ctx.cached_activations("0") is None  # nothing allocated

    class Cheap:  # a probe that reads no activations: it still runs after the failure
        name, cheap, order = "cheap", True, 0

        def run(self, ctx):
            from harness.probes.base import ProbeResult

            return ProbeResult(scalars={"x": 1.0})

    with caplog.at_level(logging.ERROR):
        outcomes = run_probes({"activations": ActivationStats(), "cheap": Cheap()}, ctx)
    failed, ok = outcomes
    assert failed.error.startswith("the activations of 3 layer(s)") and "Traceback" not in caplog.text
    assert ok.error is None and ok.result.scalars == {"x": 1.0}
    # control: at exactly the size needed the capture runs
    ok_ctx = ProbeContext(_net(), ["0", "2", "4"], _probe_set(n), max_activation_bytes=needed)
    assert ok_ctx.activations()["0"].shape == (n, 16, 8, 8)


def test_harness_probe_leaves_out_default_layers_that_do_not_fit(tmp_path: Path, one_thread) -> None:
    """End to end on the tiny InceptionV1: with a limit that holds all but its largest layer, that layer is gone
    from every probe's keys and the others are measured; the default limit keeps all (control)."""
    from harness.probe import probe

    base = [*(o for o in SMALL_PROBES if not o.startswith("probes.")), "probes=[activations,spectra]"]
    probe(probe_cfg(tmp_path / "all", *base))
    full = RunRecord.load(tmp_path / "all" / "run")["metrics"]
    layers = sorted({k.split("/")[1] for k in full if k.startswith("activations/") and k.count("/") == 2})
    assert "conv2d0" in layers and len(layers) > 3
    # 16 images at 32 px: 778 kB in all, conv2d0 262 kB of it (the largest); 0.0005 GB = 537 kB holds the rest
    probe(probe_cfg(tmp_path / "cut", *base, "probing.max_activation_gb=0.0005"))
    cut = RunRecord.load(tmp_path / "cut" / "run")["metrics"]
    measured = sorted({k.split("/")[1] for k in cut if k.startswith("activations/") and k.count("/") == 2})
    assert set(layers) - set(measured) == {"conv2d0"}
