"""Weight surgery on a trained tiny InceptionV1: widening keeps the function, pruning is exact, freezing holds.

The "trained" model is a narrow InceptionV1 with batch norm after a few AdamW steps on random data:
enough to give every weight and running statistic a non-default value, in well under a second.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.facts.errors import ConfigError
from harness.models import (
    InceptionV1,
    added_units,
    freeze_old,
    least_active_units,
    max_output_change,
    prune_least_active,
    prune_units,
    resize,
)
from harness.models.hooks import run_with_cache
from harness.models.surgery import consumers

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors; the machine's cores are shared
ARCH = {"num_classes": 4, "width": 0.125, "batch_norm": True, "lrn": False, "last_layer": "mixed4a"}
EDITS = [
    {"mixed3b_5x5": 4},  # the curve cluster: consumers are mixed4a's four input convs
    {"mixed4a_pool_reduce": 3},  # the last block: the consumer is the classifier
    {"conv2d1": 2, "mixed3a_3x3_bottleneck": 2},  # a stem layer and a bottleneck
    {"mixed3b_5x5_bottleneck": 2, "mixed3b_5x5": 2},  # new units reading new units
]


def _step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    opt.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


@pytest.fixture(scope="module")
def trained() -> tuple[InceptionV1, torch.Tensor, torch.Tensor]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = InceptionV1(**ARCH)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 4, (8,))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        _step(net, opt, x, y)
    torch.set_num_threads(threads)
    return net.eval(), x, y


@pytest.mark.parametrize("init", ["zero", "net2net"])
@pytest.mark.parametrize("edit", EDITS, ids=lambda e: "+".join(e))
def test_widening_keeps_the_function(trained, init: str, edit: dict) -> None:
    net, x, _ = trained
    wide = resize(net, edit, init=init, generator=torch.Generator().manual_seed(1))
    assert all(wide.channels[k] == net.channels[k] + v for k, v in edit.items())
    change = max_output_change(net, wide, x)
    print(f"{init} {edit}: max |logit change| = {change:.2e}")
    assert change < 1e-5


def test_net2net_noise_keeps_the_function_and_splits_unevenly(trained) -> None:
    net, x, _ = trained
    gen = torch.Generator().manual_seed(2)
    wide = resize(net, {"mixed3b_5x5": 4}, init="net2net", noise=0.2, generator=gen)
    assert max_output_change(net, wide, x) < 1e-5
    consumer, offset = consumers(wide, "mixed3b_5x5")[0]
    new_cols = consumer.weight[:, offset + 12 : offset + 16]  # mixed3b_5x5 has 12 units at width 0.125
    exact = resize(net, {"mixed3b_5x5": 4}, init="net2net", generator=torch.Generator().manual_seed(2))
    exact_cols = consumers(exact, "mixed3b_5x5")[0][0].weight[:, offset + 12 : offset + 16]
    assert not torch.allclose(new_cols, exact_cols)


@pytest.mark.parametrize("init", ["zero", "net2net"])
def test_new_units_get_gradients_after_a_step(trained, init: str) -> None:
    net, x, y = trained
    wide = resize(net, {"mixed3b_5x5": 4}, init=init, generator=torch.Generator().manual_seed(3)).train()
    _step(wide, torch.optim.AdamW(wide.parameters(), lr=1e-2), x, y)  # zero init: outgoing weights move first
    wide.zero_grad()
    F.cross_entropy(wide(x), y).backward()
    incoming = wide.features.mixed3b.conv_5x5.conv.weight.grad[-4:]
    consumer, offset = consumers(wide, "mixed3b_5x5")[0]
    outgoing = consumer.weight.grad[:, offset + 12 : offset + 16]  # 12 old units at width 0.125, then 4 new
    assert incoming.abs().sum(dim=(1, 2, 3)).min() > 0 and outgoing.abs().sum() > 0


def test_freeze_old_keeps_old_weights_bit_identical_under_adamw(trained) -> None:
    net, x, y = trained
    wide = resize(net, {"mixed3b_5x5": 4}, generator=torch.Generator().manual_seed(4))
    names = {id(p): n for n, p in wide.named_parameters()}
    outgoing = {names[id(m.weight)]: offset for m, offset in consumers(wide, "mixed3b_5x5")}
    before = {k: v.clone() for k, v in wide.state_dict().items() if not k.endswith("num_batches_tracked")}
    counts = freeze_old(wide, added_units(wide, {"mixed3b_5x5": 4}))
    assert counts["trainable"] > 0 and counts["frozen"] > 20 * counts["trainable"]
    assert set(wide.state_dict()) >= set(before)  # plain keys: checkpoints load into an unfrozen network
    wide.train()
    opt = torch.optim.AdamW([p for p in wide.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.5)
    for _ in range(3):
        _step(wide, opt, x, y)
    after = wide.state_dict()
    for key, old in before.items():
        may_change = torch.zeros_like(old, dtype=torch.bool)
        if key.startswith("features.mixed3b.conv_5x5."):
            may_change[12:] = True  # the 4 new units (12 old ones at width 0.125): weights, BN entries, stats
        if key in outgoing:
            may_change[:, outgoing[key] + 12 : outgoing[key] + 16] = True  # their outgoing weights
        assert torch.equal(after[key][~may_change], old[~may_change]), key
        if may_change.any() and "running" not in key:
            assert not torch.equal(after[key][may_change], old[may_change]), key
    assert len(outgoing) == 4
    plain = InceptionV1(**wide.config)
    plain.load_state_dict(after)
    assert max_output_change(plain, wide, x) == 0.0


def test_freeze_old_needs_something_to_train(trained) -> None:
    net, _, _ = trained
    wide = resize(net, {})
    with pytest.raises(ConfigError, match="nothing to train"):
        freeze_old(wide, {})
    freeze_old(wide, {}, train_also=["fc"])
    assert [n for n, p in wide.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_prune_units_removes_exactly_those_and_keeps_the_rest(trained) -> None:
    net, x, _ = trained
    units = [0, 5, 7]
    small = prune_units(net, "mixed4a_3x3", units)
    assert small.channels["mixed4a_3x3"] == net.channels["mixed4a_3x3"] - 3
    assert small.fc.in_features == net.fc.in_features - 3
    _, old = run_with_cache(net, x, names=["mixed4a_3x3", "mixed3b"])
    out, new = run_with_cache(small, x, names=["mixed4a_3x3", "mixed3b"])
    kept = [u for u in range(net.channels["mixed4a_3x3"]) if u not in units]
    assert torch.equal(new["mixed4a_3x3"], old["mixed4a_3x3"][:, kept])
    assert torch.equal(new["mixed3b"], old["mixed3b"]) and out.shape == (8, 4)
    with pytest.raises(ConfigError, match="mixed4a_3x3"):
        prune_units(net, "mixed4a_3x3", list(range(net.channels["mixed4a_3x3"])))
    with pytest.raises(ConfigError, match="valid"):
        prune_units(net, "mixed4a", [0])


def test_least_active_units_by_activation_or_outgoing_weights(trained) -> None:
    net, x, _ = trained
    _, cache = run_with_cache(net, x, names=["mixed3b_5x5"])
    mean = cache["mixed3b_5x5"].mean(dim=(0, 2, 3))
    assert least_active_units(net, "mixed3b_5x5", 3, images=x) == sorted(torch.argsort(mean)[:3].tolist())
    by_weight = least_active_units(net, "mixed3b_5x5", 3)
    assert len(by_weight) == 3 and len(set(by_weight)) == 3
    assert prune_least_active(net, "mixed3b_5x5", 3, images=x).channels["mixed3b_5x5"] == 9


def test_negative_widen_prunes_and_must_leave_one_unit() -> None:
    net = InceptionV1(**{**ARCH, "widen": {"mixed4a_3x3": -8}})
    assert net.channels["mixed4a_3x3"] == 26 - 8
    net(torch.rand(1, 3, 32, 32))
    with pytest.raises(ConfigError) as info:
        InceptionV1(**{**ARCH, "widen": {"mixed4a_3x3": -26}})
    message = str(info.value)
    assert "mixed4a_3x3" in message and "26" in message and ">= 1" in message and "\n" not in message
