"""The probe-scaling benchmark's own parts: the exponent fit, the peak-memory meter, the probe list.

Why separate from tests/test_benchmarks.py (which runs the whole quick suite): these are fast checks with
planted answers, so a wrong slope or a meter that misses an allocation fails here with a clear message.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scaling():
    spec = importlib.util.spec_from_file_location("probe_scaling", ROOT / "benchmarks" / "probe_scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grid(times):
    return [{"channels": c, "pixels": p, "seconds": {"probe": times(c, p)}} for c in (100, 200, 400)
            for p in (64**2, 128**2, 224**2)]


def test_exponents_recover_planted_slopes(scaling) -> None:
    fit = scaling.exponents(_grid(lambda c, p: 0.003 * c**2 * p**0.5), ["probe"])["probe"]
    assert fit["channels"] == pytest.approx(2.0, abs=1e-9) and fit["pixels"] == pytest.approx(0.5, abs=1e-9)
    flat = scaling.exponents(_grid(lambda c, p: 1.5), ["probe"])["probe"]  # negative control: no growth
    assert flat["channels"] == pytest.approx(0.0, abs=1e-9) and flat["pixels"] == pytest.approx(0.0, abs=1e-9)


def test_exponents_skip_failed_points_and_need_three(scaling) -> None:
    grid = _grid(lambda c, p: c * p)
    for point in grid[3:]:
        point["seconds"]["probe"] = math.nan  # failed
    grid[0]["seconds"]["probe"] = 0.0  # too fast to time: no log
    fit = scaling.exponents(grid, ["probe", "absent"])
    assert fit["probe"]["points"] == 2 and math.isnan(fit["probe"]["channels"])
    assert fit["absent"]["points"] == 0 and math.isnan(fit["absent"]["pixels"])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_rss_sees_a_planted_allocation(scaling) -> None:
    with scaling.PeakRSS() as big:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        del block
    with scaling.PeakRSS() as idle:
        pass
    assert 180 <= big.mb <= 400, big.mb
    assert idle.mb < 20, idle.mb


def test_probes_are_the_default_set_plus_ablation_in_runner_order(scaling) -> None:
    probes = scaling.build_probes({"featvis": {"steps": 3}})
    assert set(probes) == {*scaling.probe_names()} and "ablation" in probes and "curves" in probes
    orders = [p.order for p in probes.values()]
    assert orders == sorted(orders)  # consumers of ctx.results (featvis, lineage, ablation) after their sources
    assert probes["featvis"].steps == 3 and probes["ablation"].units == scaling.ABLATION_UNITS
