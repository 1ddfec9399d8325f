"""CKA: the estimator against a hand computation, its invariances, its edge cases, and the probe's contract."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from harness.probes import ProbeContext, ProbeSet
from harness.probes.cka import CKA, linear_cka


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(_rand(d, d, seed=seed))
    return q


@pytest.mark.parametrize("debiased", [False, True])
def test_identical_inputs_give_exactly_one(debiased: bool) -> None:
    x = _rand(40, 12).float()
    assert linear_cka(x, x, debiased) == 1.0
    assert linear_cka(x.reshape(40, 3, 2, 2), x, debiased) == 1.0  # extra dims are flattened per sample


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_rotation_and_isotropic_scale(debiased: bool) -> None:
    x, y = _rand(60, 10, seed=1), _rand(60, 10, seed=2) + 0.5 * _rand(60, 10, seed=1)
    base = linear_cka(x, y, debiased)
    assert 0.05 < base < 0.95  # a non-trivial value, so the comparisons below mean something
    assert linear_cka(x @ _orthogonal(10, 3) * 7.5, y, debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, y @ _orthogonal(10, 4) * 1e-3, debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x @ _orthogonal(10, 5), x * 3.0, debiased) == pytest.approx(1.0, abs=1e-12)
    # negative control: an anisotropic rescaling is NOT a symmetry of CKA
    stretch = torch.ones(10, dtype=torch.float64)
    stretch[0] = 30.0
    assert abs(linear_cka(x * stretch, y, debiased) - base) > 1e-2


def test_matches_hand_computed_hsic() -> None:
    x = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 1.5], [0.0, 0.7]])
    y = np.array([[0.3, 1.0], [1.0, -0.2], [2.5, 0.4], [-1.0, 2.0], [0.1, 0.0]])
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic_biased(kx: np.ndarray, ky: np.ndarray) -> float:
        return float(np.trace(kx @ h @ ky @ h)) / (n - 1) ** 2

    def hsic_unbiased(kx: np.ndarray, ky: np.ndarray) -> float:  # Song et al. 2012, eq. 5
        kx, ky = kx - np.diag(np.diag(kx)), ky - np.diag(np.diag(ky))
        one = np.ones(n)
        total = np.trace(kx @ ky) + (one @ kx @ one) * (one @ ky @ one) / ((n - 1) * (n - 2))
        return float(total - 2.0 / (n - 2) * (one @ kx @ ky @ one)) / (n * (n - 3))

    kx, ky = x @ x.T, y @ y.T
    for hsic, debiased in ((hsic_biased, False), (hsic_unbiased, True)):
        expected = hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))
        assert linear_cka(torch.tensor(x), torch.tensor(y), debiased) == pytest.approx(expected, abs=1e-12)


def test_independent_features_score_near_zero_and_debiasing_helps() -> None:
    biased, debiased = [], []
    for seed in range(5):
        x, y = _rand(600, 5, seed=10 + seed), _rand(600, 5, seed=20 + seed)
        biased.append(linear_cka(x, y))
        debiased.append(abs(linear_cka(x, y, debiased=True)))
    assert np.mean(biased) < 0.02
    assert np.mean(debiased) < np.mean(biased)
    # features >> samples: biased CKA of unrelated features is inflated, the debiased estimate is not
    x, y = _rand(30, 500, seed=1), _rand(30, 500, seed=2)
    assert linear_cka(x, y) > 0.5
    assert abs(linear_cka(x, y, debiased=True)) < 0.2


def test_constant_tiny_and_bad_inputs() -> None:
    x = _rand(20, 4)
    for debiased in (False, True):
        assert linear_cka(torch.full((20, 4), 0.1), x, debiased) == 0.0
        assert linear_cka(torch.zeros(20, 4), torch.zeros(20, 3), debiased) == 0.0
        assert linear_cka(x * 1e-200, x * 1e200, debiased) == 1.0  # no under/overflow
        assert linear_cka(x * 1e-30, _rand(20, 4, seed=1), debiased) == pytest.approx(
            linear_cka(x, _rand(20, 4, seed=1), debiased), abs=1e-12
        )
    assert linear_cka(x[:1], x[:1]) == 0.0  # one sample has no variance
    assert np.isfinite(linear_cka(x[:2], _rand(2, 3)))
    with pytest.raises(ValueError, match="at least 4 samples"):
        linear_cka(x[:3], x[:3], debiased=True)
    with pytest.raises(ValueError, match="NaN or inf"):
        linear_cka(torch.full((20, 4), float("nan")), x)
    with pytest.raises(ValueError, match="sample counts differ"):
        linear_cka(x, x[:10])


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())


def _probe_set(n: int = 40) -> ProbeSet:
    g = torch.Generator().manual_seed(0)
    return ProbeSet(images=torch.rand(n, 3, 8, 8, generator=g), labels=torch.arange(n) % 2, classes=("a", "b"))


def test_probe_against_reference_and_layer_matrix() -> None:
    torch.manual_seed(0)
    model = _net(0).train()
    state = copy.deepcopy(model.state_dict())
    probe = CKA()
    same = probe.run(ProbeContext(model, ["0", "2"], _probe_set(), reference=copy.deepcopy(model)))
    assert same.scalars == {"0/cka_to_reference": 1.0, "2/cka_to_reference": 1.0}
    other = probe.run(ProbeContext(model, ["0", "2"], _probe_set(), reference=_net(1)))
    assert all(v < 0.999 for v in other.scalars.values())  # negative control: a different network
    matrix = np.array(other.info["layer_cka"]["matrix"])
    assert other.info["layer_cka"]["layers"] == ["0", "2"]
    assert np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T) and 0 < matrix[0, 1] < 1
    image = other.images["layer_cka"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    # the probe changes nothing: no hooks, same weights, same mode
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and all(m.training for m in model.modules())


def test_probe_without_reference_or_with_missing_layers() -> None:
    model = _net(0)
    result = CKA(debiased=True).run(ProbeContext(model, ["0", "2"], _probe_set()))
    assert not result.scalars and "skipped" in result.info["reference"]
    assert result.info["layer_cka"]["matrix"][0][0] == 1.0
    shallow = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    partial = CKA().run(ProbeContext(model, ["0", "2"], _probe_set(), reference=shallow))
    assert set(partial.scalars) == {"0/cka_to_reference"}
    assert partial.info["skipped"] == {"2": "not a layer of the reference model"}
    assert all(not m._forward_hooks for m in shallow.modules())


def test_reference_grams_are_cached_per_reference_and_probe_set(tmp_path, monkeypatch) -> None:
    """A second run against the same reference reads its Gram matrices from the cache: same values, no pass
    through the reference. A different reference, or different probe images, misses (negative controls); an
    unreadable cache file is recomputed, and `cache_reference=false` never touches the cache."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    model = _net(0)

    def run(reference: nn.Module, probe_set: ProbeSet | None = None, **kwargs):
        calls = []
        hook = reference.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            result = CKA(**kwargs).run(ProbeContext(model, ["0", "2"], probe_set or _probe_set(), reference=reference))
        finally:
            hook.remove()
        return result, len(calls)

    first, passes = run(_net(1))
    assert first.info["reference_grams"].startswith("computed; cached in") and passes > 0
    again, passes = run(_net(1))  # a fresh copy of the same weights: the key is the weights, not the object
    assert again.info["reference_grams"].startswith("cached") and passes == 0
    assert again.scalars == first.scalars and all(0 < v < 0.999 for v in again.scalars.values())
    debiased, passes = run(_net(1), debiased=True)  # the cache holds raw Grams: debiasing is applied after
    assert passes == 0 and debiased.scalars == run(_net(1), debiased=True, cache_reference=False)[0].scalars
    other, passes = run(_net(2))
    assert other.info["reference_grams"].startswith("computed") and passes > 0 and other.scalars != first.scalars
    fewer, passes = run(_net(1), _probe_set(n=30))
    assert fewer.info["reference_grams"].startswith("computed") and passes > 0
    for path in (tmp_path / "cka").glob("*.pt"):
        path.write_bytes(b"not a tensor file")
    broken, passes = run(_net(1))
    assert broken.info["reference_grams"].startswith("computed") and passes > 0 and broken.scalars == first.scalars
    plain, passes = run(_net(1), cache_reference=False)
    assert plain.info["reference_grams"] == "computed" and passes > 0 and plain.scalars == first.scalars
