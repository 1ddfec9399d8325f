"""model.widen_init=gradmax / tiny: new units that learn, checked against autograd and TINY's equations.

Hand-built nets: a conv -> ReLU -> conv -> mean -> linear chain (B exact: no pools on the path) and a two-layer
MLP (TINY's closed form by hand), plus the tiny InceptionV1 and a TinyResNet target behind batch norm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.facts.errors import ConfigError
from harness.growth.new_units import mean_loss, new_units
from harness.growth.tiny_init import RIDGE, tiny_directions
from harness.growth.widen_init import init_units
from harness.models import InceptionV1, max_output_change, resize
from harness.models.graph_widen import widen_modules
from tests.helpers import GatedNet, TinyResNet

pytestmark = pytest.mark.usefixtures("one_thread")


class Chain(nn.Module):
    """a: conv 3 -> 4 (k3), ReLU, b: conv 4 -> 5 (k3), ReLU, mean, head: linear 5 -> 3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.b(F.relu(self.a(x)))).mean((2, 3)))


class MLP(nn.Module):
    """Flattened 2x2 images (12 features) -> l1: 4 units, ReLU -> l2: 3 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(12, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(F.relu(self.l1(x.flatten(1))))


def _batches(shape: tuple[int, ...], classes: int, n: int = 2, seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, *shape, generator=gen), torch.randint(classes, (16,), generator=gen)) for _ in range(n)]


def _loss(net: nn.Module, batches) -> torch.Tensor:
    total = sum(len(y) for _, y in batches)
    return sum(F.cross_entropy(net(x), y, reduction="sum") for x, y in batches) / total


def _grown(seed: int = 0) -> tuple[nn.Module, nn.Module, list]:
    torch.manual_seed(seed)
    net = Chain().eval()
    return net, widen_modules(net, {"a": 3}, image_size=8).eval(), _batches((3, 8, 8), 3)


def test_gradmax_keeps_the_function_and_the_fan_in_gradient_is_the_predicted_singular_values() -> None:
    net, wide, batches = _grown()
    record = init_units(wide, {"a": [4, 5, 6]}, batches, "gradmax", image_size=8)["a"]
    assert max_output_change(net, wide, torch.cat([x for x, _ in batches])) <= 1e-5
    assert float(wide.a.weight[4:].detach().abs().max()) == 0.0  # zero fan-in
    grad = torch.autograd.grad(_loss(wide, batches), wide.a.weight)[0][4:].flatten(1).norm(dim=1)
    assert bool((grad > 0).all())  # ReLU at 0: the alive bias puts the unit on the slope-1 side
    torch.testing.assert_close(grad, torch.tensor(record["predicted_grad"]), rtol=1e-4, atol=1e-7)
    assert record["sigma"] == sorted(record["sigma"], reverse=True)
    fan_out = wide.b.weight[:, 4:].transpose(0, 1).flatten(1).norm(dim=1)
    torch.testing.assert_close(fan_out, torch.full((3,), record["fan_out_norm"]), rtol=1e-5, atol=0)


def test_without_the_alive_bias_relu_starves_the_zero_fan_in() -> None:
    """The negative control: a zero pre-activation sits on ReLU's zero slope and the fan-in gets no gradient."""
    net, wide, batches = _grown()
    init_units(wide, {"a": [4, 5, 6]}, batches, "gradmax", image_size=8)
    with torch.no_grad():
        wide.a.bias[4:] = 0.0
    grad = torch.autograd.grad(_loss(wide, batches), wide.a.weight)[0][4:]
    assert float(grad.abs().max()) == 0.0


def test_tiny_lowers_the_loss_on_its_batches_and_records_it() -> None:
    net, wide, batches = _grown(1)
    before = mean_loss(net, batches)
    record = init_units(wide, {"a": [4, 5, 6]}, batches, "tiny", image_size=8)["a"]
    assert record["loss_change"] <= 1e-7 and record["loss_before"] == pytest.approx(before, abs=1e-6)
    assert mean_loss(wide, batches) == pytest.approx(record["loss_after"], abs=1e-6)
    if record["gamma"] > 0:
        assert record["loss_change"] < 0 and float(wide.a.weight[4:].detach().abs().max()) > 0


def test_tiny_held_out_amplitude_is_searched_on_the_held_out_batches() -> None:
    """Directions from one set, amplitude from another: the record's loss change is the held-out batches' (<= 0);
    the same batches in both roles give exactly the default's units (the control)."""
    net, wide, batches = _grown(1)
    held = _batches((3, 8, 8), 3, seed=7)
    same = widen_modules(net, {"a": 3}, image_size=8).eval()
    default = init_units(same, {"a": [4, 5, 6]}, batches, "tiny", image_size=8)["a"]
    twice = init_units(wide, {"a": [4, 5, 6]}, batches, "tiny", image_size=8, amplitude_batches=batches)["a"]
    assert (twice["gamma"], twice["sign"], twice["loss_change"]) == (default["gamma"], default["sign"],
                                                                     default["loss_change"])  # fmt: skip
    assert torch.equal(same.a.weight, wide.a.weight) and twice["amplitude_on"] == "held_out"
    record = init_units(wide, {"a": [4, 5, 6]}, batches, "tiny", image_size=8, amplitude_batches=held)["a"]
    assert record["loss_before"] == pytest.approx(mean_loss(net, held), abs=1e-6)
    assert record["loss_change"] <= 1e-7 and mean_loss(wide, held) == pytest.approx(record["loss_after"], abs=1e-6)
    assert record["lambda"] == pytest.approx(default["lambda"], rel=1e-5)  # the directions are the fit batches'


def test_tiny_directions_match_the_papers_equations_on_an_mlp() -> None:
    torch.manual_seed(0)
    net = MLP().eval()
    wide = widen_modules(net, {"l1": 1}, image_size=2).eval()
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(64, 3, 2, 2, generator=gen), torch.randint(3, (64,), generator=gen)
    found = new_units(wide, {"l1": [4]}, 2, "tiny")
    alpha, omega, _ = tiny_directions(wide, [(x, y)], found)["l1"]
    net, x = net.double(), x.double().flatten(1)
    # By hand: V = -dL/dz2, a = the old hidden units, dW* by ridge least squares, V_proj, S, N, SVD(S^-1/2 N).
    z2 = net(x).requires_grad_(True)
    v = -torch.autograd.grad(F.cross_entropy(z2, y, reduction="sum") / 64, z2)[0]
    a = F.relu(net.l1(x)).detach()
    gram = a.T @ a
    dw = (v.T @ a) @ torch.linalg.inv(gram + RIDGE * gram.diagonal().mean() * torch.eye(4, dtype=torch.float64))
    v_proj = v - a @ dw.T
    s = x.T @ x / 64 * 64  # per-batch mean covariance, weighted by the batch's images
    s = s + RIDGE * s.diagonal().mean() * torch.eye(12, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(s)
    s_half_inv = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    u, _, vh = torch.linalg.svd(s_half_inv @ (x.T @ v_proj), full_matrices=False)
    expect_alpha, expect_omega = s_half_inv @ u[:, 0], vh[0]
    cos = F.cosine_similarity
    assert abs(float(cos(alpha[0], expect_alpha, dim=0))) > 1 - 1e-4  # float32 statistics vs float64 by hand
    assert abs(float(cos(omega[0], expect_omega, dim=0))) > 1 - 1e-4


def test_inception_v1_gradmax_and_tiny() -> None:
    torch.manual_seed(0)
    arch = {"num_classes": 4, "width": 0.125, "batch_norm": True, "lrn": False, "last_layer": "mixed4a"}
    net = InceptionV1(**arch).eval()
    batches = _batches((3, 32, 32), 4)
    images = torch.cat([x for x, _ in batches])
    for init in ("gradmax", "tiny"):
        wide = resize(net, {"mixed3b_5x5": 3, "conv2d1": 2}, init=init).eval()
        added = {"mixed3b_5x5": [wide.channels["mixed3b_5x5"] - 3 + i for i in range(3)],
                 "conv2d1": [wide.channels["conv2d1"] - 2, wide.channels["conv2d1"] - 1]}  # fmt: skip
        record = init_units(wide, added, batches, init, image_size=32)
        if init == "gradmax":
            assert max_output_change(net, wide, images) <= 1e-5
            assert all(r["sigma"][0] > 0 for r in record.values())
        else:
            assert record["conv2d1"]["loss_change"] <= 1e-7


def test_a_target_behind_batch_norm_gets_the_alive_bias_in_the_norm() -> None:
    torch.manual_seed(0)
    net = TinyResNet().eval()
    wide = widen_modules(net, {"block.conv1": 2}, image_size=8).eval()
    batches = _batches((3, 8, 8), 4)
    init_units(wide, {"block.conv1": [6, 7]}, batches, "gradmax", image_size=8)
    assert max_output_change(net, wide, torch.cat([x for x, _ in batches])) <= 1e-5
    assert float(wide.block.bn1.bias[6]) > 0
    grad = torch.autograd.grad(_loss(wide, batches), wide.block.conv1.weight)[0][6:]
    assert float(grad.abs().max()) > 0


def test_a_gate_on_the_path_is_refused_in_one_line() -> None:
    net = widen_modules(GatedNet(), {"a": 2}, image_size=8)
    with pytest.raises(ConfigError, match=r"model.widen_init=gradmax cannot serve model.widen.a: .*gate.*zero or "
                                          r"net2net"):  # fmt: skip
        init_units(net, {"a": [4, 5]}, _batches((3, 8, 8), 4), "gradmax", image_size=8)


def test_a_continued_run_with_gradmax_carried_state_and_a_new_lr(make_cfg, tmp_path) -> None:
    """harness-train model.init_from=... +model.widen...=3 model.widen_init=gradmax model.carry_optimizer=true."""
    from omegaconf import open_dict

    from harness.run.records import RunRecord
    from harness.train import train

    small = ["logger=none", "test=false", "data.train_size=64", "data.val_size=32", "data.test_size=32",
             "data.batch_size=16", "trainer.num_sanity_val_steps=0"]  # fmt: skip
    cfg = make_cfg(*small)
    train(cfg)
    ckpt = RunRecord.load(cfg.paths.output_dir)["checkpoints"]["last"]
    for init in ("gradmax", "tiny"):
        cfg = make_cfg(*small, f"model.init_from={ckpt}", "+model.widen.mixed3b_5x5=3", f"model.widen_init={init}",
                       "model.widen_batches=2", "model.carry_optimizer=true", "model.new_lr_scale=2.0")  # fmt: skip
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / init)
        _, objects = train(cfg)
        record = RunRecord.load(cfg.paths.output_dir)
        assert record["status"] == "finished" and record["widen_init"]["batches"] == 2
        target = record["widen_init"]["targets"]["mixed3b_5x5"]
        assert target["init"] == init and (init == "gradmax" or target["loss_change"] <= 1e-7)
        growth = objects["module"].growth
        assert growth.step > 0 and not growth.fresh and growth.hooks is not None
