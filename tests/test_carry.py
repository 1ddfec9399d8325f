"""Optimizer state and schedule across growth: growing by 0 units and carrying the state is the same as never
stopping; grown parameters keep old moments and zero-pad new entries; new entries get their own LR factor."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from harness.facts.errors import ConfigError
from harness.growth.carry import Growth, NewLR, carry_state, growth_from_config, new_entry_masks
from harness.models import InceptionV1, resize
from harness.models.graph_widen import widen_modules
from harness.run.module import warmup_cosine
from tests.helpers import TinyResNet

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(steps: int, size: int, classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.rand(4, 3, size, size, generator=gen), torch.randint(classes, (4,), generator=gen))
            for _ in range(steps)]  # fmt: skip


def _optimizer(net: nn.Module, total: int):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.05)
    return opt, warmup_cosine(opt, total, warmup_fraction=0.25)


def _train(net: nn.Module, opt, sched, batches) -> None:
    net.train()
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("family", ["inception_v1", "resnet18"])
def test_growing_by_zero_and_carrying_the_state_is_never_stopping(family: str) -> None:
    torch.manual_seed(0)
    if family == "inception_v1":
        net = InceptionV1(num_classes=4, width=0.125, batch_norm=True, lrn=False, last_layer="mixed4a")
        grow, size = (lambda n: resize(n, {})), 32
    else:
        net = torchvision.models.resnet18(num_classes=4)
        grow, size = (lambda n: widen_modules(n, {})), 32
    n = 3
    batches = _data(2 * n, size, 4)
    straight = copy.deepcopy(net)
    opt, sched = _optimizer(straight, 2 * n)
    _train(straight, opt, sched, batches)

    first = copy.deepcopy(net)
    opt, sched = _optimizer(first, 2 * n)
    _train(first, opt, sched, batches[:n])
    grown = grow(first)  # a new network object, its weights copied through the (identity) unit maps
    growth = Growth({}, old_state=opt.state_dict(), old_names=[k for k, _ in first.named_parameters()], step=n,
                    prefix="")  # fmt: skip
    opt2 = torch.optim.AdamW(grown.parameters(), lr=1e-2, weight_decay=0.05)
    offset = growth.attach(opt2, grown)
    sched2 = warmup_cosine(opt2, offset + n, warmup_fraction=0.25)
    growth.advance(sched2)
    assert sched2.get_last_lr() == sched.get_last_lr() and not growth.fresh
    restarted = copy.deepcopy(grown)  # the negative control: a fresh optimizer, its schedule restarted at step 0
    _train(grown, opt2, sched2, batches[n:])
    _train(restarted, *_optimizer(restarted, n), batches[n:])

    def diff(net: nn.Module) -> float:
        return max(float((a - b).detach().abs().max()) for a, b in zip(straight.parameters(), net.parameters()))

    assert diff(grown) <= 1e-6 and diff(restarted) > 1e-4


def test_grown_parameters_keep_old_moments_and_start_new_entries_at_zero() -> None:
    torch.manual_seed(0)
    net = TinyResNet()
    opt, sched = _optimizer(net, 4)
    _train(net, opt, sched, _data(2, 8, 4))
    wide = widen_modules(net, {"block.conv1": 2}, image_size=8)
    masks = new_entry_masks(wide, {"block.conv1": [6, 7]}, image_size=8)
    assert set(masks) == {"block.conv1.weight", "block.bn1.weight", "block.bn1.bias", "block.conv2.weight"}
    opt2 = torch.optim.AdamW(wide.parameters(), lr=1e-2)
    state, fresh = carry_state(opt.state_dict(), [k for k, _ in net.named_parameters()],
                               list(wide.named_parameters()), masks, opt2.state_dict()["param_groups"])  # fmt: skip
    opt2.load_state_dict(state)
    assert not fresh
    old = opt.state[net.block.conv2.weight]["exp_avg"]
    new = opt2.state[wide.block.conv2.weight]["exp_avg"]
    assert torch.equal(new[:, :6], old) and float(new[:, 6:].abs().max()) == 0.0
    assert float(opt2.state[wide.block.bn1.weight]["exp_avg_sq"][6:].abs().max()) == 0.0
    assert torch.equal(opt2.state[wide.block.conv1.weight]["exp_avg"][:6], opt.state[net.block.conv1.weight]["exp_avg"])


def test_new_lr_scale_scales_only_the_new_entries_steps() -> None:
    torch.manual_seed(0)
    wide = widen_modules(TinyResNet(), {"block.conv1": 2}, image_size=8)
    masks = new_entry_masks(wide, {"block.conv1": [6, 7]}, image_size=8)
    x, y = _data(1, 8, 4)[0]
    moved = {}
    for scale in (1.0, 3.0):
        net = copy.deepcopy(wide)
        with torch.no_grad():
            net.block.conv2.weight[:, 6:] = 0.1  # a non-zero fan-out, so the new fan-in gets a gradient
        start = copy.deepcopy(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        params = dict(net.named_parameters())
        NewLR(opt, {params[k]: m for k, m in masks.items()}, scale)
        F.cross_entropy(net(x), y).backward()
        opt.step()
        moved[scale] = {k: (dict(net.named_parameters())[k] - p).detach() for k, p in start.named_parameters()}
    m = masks["block.conv1.weight"]
    assert float(moved[1.0]["block.conv1.weight"][m].abs().max()) > 0
    torch.testing.assert_close(moved[3.0]["block.conv1.weight"][m], 3 * moved[1.0]["block.conv1.weight"][m])
    torch.testing.assert_close(moved[3.0]["block.conv1.weight"][~m], moved[1.0]["block.conv1.weight"][~m])
    torch.testing.assert_close(moved[3.0]["fc1.weight"], moved[1.0]["fc1.weight"])


def test_carrying_without_a_checkpoint_is_a_fresh_start_and_a_checkpoint_needs_optimizer_state(tmp_path) -> None:
    cfg = {"_target_": "harness.models.build.inception_v1", "carry_optimizer": True}
    assert growth_from_config(cfg, TinyResNet(), 8) is None  # a grow chain's base round: nothing to carry
    assert growth_from_config({"_target_": "x"}, TinyResNet(), 8) is None
    weights_only = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, weights_only)
    with pytest.raises(ConfigError, match="holds no optimizer state .* model.carry_optimizer=false"):
        growth_from_config({**cfg, "init_from": str(weights_only)}, TinyResNet(), 8)


def test_oracle_jobs_take_the_growth_keys_as_overrides(tmp_path) -> None:
    """harness-oracle BASE model.widen_init=gradmax model.carry_optimizer=true: every job's model gets them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from harness.oracle.candidates import Candidate
    from harness.oracle.launch import GROUP, write_group
    from tests.conftest import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        full = compose("train", overrides=["probes=none"])
        base = {k: OmegaConf.to_container(full[k], resolve=True) for k in ("model", "data", "module")}
    conf = write_group(tmp_path, base, "base.ckpt", [Candidate("mixed3b_5x5", "widen", "mixed3b_5x5", 4, 100)])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra.searchpath=[file://{conf.resolve()}]", f"+{GROUP}=mixed3b_5x5",
                                              "model.widen_init=gradmax", "model.carry_optimizer=true"])  # fmt: skip
    finally:
        GlobalHydra.instance().clear()
    assert cfg.model.init_from == "base.ckpt" and dict(cfg.model.widen) == {"mixed3b_5x5": 4}
    assert cfg.model.widen_init == "gradmax" and cfg.model.carry_optimizer is True
