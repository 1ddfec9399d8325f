"""Spectra probe: stable rank and spectral norm of hand-set weights, a planted power-law exponent, the
skip rule for small layers, Inception block expansion, and that the model is untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.probes import ProbeContext, ProbeSet
from harness.probes.spectra import Spectra, fit_power_law


def _ctx(model: nn.Module, layers: list[str]) -> ProbeContext:
    empty = ProbeSet(images=torch.zeros(1, 3, 8, 8), labels=torch.zeros(1, dtype=torch.long), classes=("a",))
    return ProbeContext(model, layers, empty)  # spectra never looks at the data


def _pareto(n: int, alpha: float, seed: int, xmin: float = 1.0) -> torch.Tensor:
    """Samples with density ~ x^-alpha above xmin (inverse-CDF sampling)."""
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return xmin * (1 - u) ** (-1 / (alpha - 1))


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q


def test_stable_rank_and_spectral_norm_of_hand_set_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3), nn.Linear(32, 32), nn.Conv2d(5, 8, 3))
    with torch.no_grad():
        u, v = torch.randn(6, 1), torch.randn(1, 4 * 3 * 3)
        model[0].weight.copy_((u @ v).reshape(6, 4, 3, 3))  # rank 1
        model[1].weight.copy_(_orthogonal(32, 1) * 2.0)  # orthogonal, scaled
    result = Spectra().run(_ctx(model, ["0", "1", "2"]))
    s = result.scalars
    assert s["0/stable_rank"] == pytest.approx(1.0, abs=1e-6)
    assert s["1/stable_rank"] == pytest.approx(32.0, abs=1e-4)
    assert s["1/spectral_norm"] == pytest.approx(2.0, abs=1e-5)
    expected = torch.linalg.matrix_norm(model[2].weight.detach().reshape(8, -1).double(), ord=2)
    assert s["2/spectral_norm"] == pytest.approx(float(expected), rel=1e-9)
    assert 1.0 < s["2/stable_rank"] < 8.0  # a random matrix: neither rank 1 nor flat
    assert "0/alpha" not in s and "2/alpha" not in s  # 1 and 8 non-zero eigenvalues: too few to fit
    assert set(result.info["skipped"]) == {"0", "2"}
    row = {r["layer"]: r for r in result.tables["layers"]}["0"]
    assert row["eigenvalues"] == 1 and row["alpha"] is None


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
def test_fit_recovers_planted_exponent(alpha: float) -> None:
    fit = fit_power_law(_pareto(800, alpha, seed=int(alpha * 10)))
    assert fit.alpha == pytest.approx(alpha, abs=0.3)
    # a bulk below the tail must be cut off by the KS choice of xmin, not drag alpha down
    bulk = torch.rand(800, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.9 + 0.05
    with_bulk = fit_power_law(torch.cat([bulk, _pareto(400, alpha, seed=1)]))
    assert with_bulk.alpha == pytest.approx(alpha, abs=0.3) and with_bulk.xmin >= 0.9
    # negative control: fitting from the bottom of the bulk (xmin forced low) gives a clearly wrong exponent
    assert abs(1 + 1200 / torch.log(torch.cat([bulk, _pareto(400, alpha, seed=1)]) / 0.05).sum() - alpha) > 0.5


def test_probe_recovers_alpha_planted_in_a_weight_and_leaves_model_untouched() -> None:
    eigenvalues = _pareto(200, 3.0, seed=3)
    weight = _orthogonal(200, 4) @ torch.diag(eigenvalues.sqrt().float()) @ _orthogonal(400, 5)[:200]
    model = nn.Sequential(nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 10)).train()
    with torch.no_grad():
        model[0].weight.copy_(weight)
    state = copy.deepcopy(model.state_dict())
    result = Spectra().run(_ctx(model, ["0", "2"]))
    assert result.scalars["0/alpha"] == pytest.approx(3.0, abs=0.3)
    assert "2/alpha" not in result.scalars and "2" in result.info["skipped"]  # 10 eigenvalues < 16
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and model[0].training


def test_inception_blocks_expand_to_their_units() -> None:
    torch.manual_seed(0)
    net = InceptionV1(num_classes=4, width=0.25, batch_norm=True, lrn=False, last_layer="mixed3a").eval()
    result = Spectra().run(_ctx(net, ["conv2d2", "mixed3a"]))
    units = result.info["expanded"]["mixed3a"]
    assert units[0] == "mixed3a_1x1" and len(units) == 6
    assert {f"{u}/stable_rank" for u in units} <= set(result.scalars)
    assert "conv2d2/alpha" in result.scalars  # 48 eigenvalues
    assert "mixed3a_5x5_bottleneck" in result.info["skipped"]  # 4 output channels -> 4 eigenvalues
    assert not net.training and all(not m._forward_hooks for m in net.modules())
    with pytest.raises(ConfigError, match="unknown layer"):
        Spectra(layers=["nope"]).run(_ctx(net, []))
    with pytest.raises(ConfigError):
        Spectra(min_eigenvalues=4, min_tail=8)
