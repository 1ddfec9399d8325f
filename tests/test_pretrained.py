"""Trained weights from files: Lucid's InceptionV1 (built here as a random state dict with the reference
key names and shapes), torchvision state dicts, our own checkpoints; bad files are refused in one line."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from harness.facts.errors import ConfigError
from harness.models import InceptionV1, max_output_change, torchvision_model
from harness.models.build import inception_v1, load_net
from harness.models.hooks import run_with_cache
from harness.models.pretrained import lucid_keys, read_state_dict
from harness.probe import probe
from harness.run.records import RunRecord
from harness.train import build_model, config_error, train
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


def random_lucid_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Exactly the reference key names and shapes (plus the auxiliary heads the common conversion has)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, (_, shape) in lucid_keys().items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        state[key] = torch.randn(shape, generator=gen) * (2 / fan_in) ** 0.5 / (255 if "conv2d0" in key else 1)
    state["head0_bottleneck_pre_relu_conv.weight"] = torch.zeros(128, 508, 1, 1)
    state["softmax1_pre_activation_matmul.bias"] = torch.zeros(1008)
    return state


@pytest.fixture(scope="module")
def lucid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_lucid_state()
    path = tmp_path_factory.mktemp("lucid") / "inception5h.pth"
    torch.save(state, path)
    return path, state


def _save(tmp_path: Path, obj: object, name: str = "w.pth") -> Path:
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def test_lucid_state_dict_loads_and_addresses_the_literature_units(lucid) -> None:
    path, state = lucid
    net = inception_v1(weights=str(path), num_classes=1008).eval()
    assert net.input_transform == "lucid" and net.config["widen"] == {}
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    names = ["conv2d2", "mixed3a", "mixed3b", "mixed3b_5x5", "mixed4a", "mixed5b"]
    out, cache = run_with_cache(net, x, names=names)
    shapes = {k: tuple(v.shape[1:]) for k, v in cache.items()}
    assert out.shape == (1, 1008)
    assert shapes == {"conv2d2": (192, 56, 56), "mixed3a": (256, 28, 28), "mixed3b": (480, 28, 28),
                      "mixed3b_5x5": (96, 28, 28), "mixed4a": (508, 14, 14), "mixed5b": (1024, 7, 7)}  # fmt: skip
    assert torch.equal(net.features.mixed3b.conv_5x5.conv.weight, state["mixed3b_5x5_pre_relu_conv.weight"])
    assert torch.equal(net.fc.weight, state["softmax2_pre_activation_matmul.weight"])
    assert torch.equal(cache["mixed3b"][:, 379], cache["mixed3b_5x5"][:, 59])  # the curve detector mixed3b:379
    plain = InceptionV1(num_classes=1008)  # no transform: feed it Lucid's preprocessing by hand
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x * 255 - 117), out, rtol=1e-5, atol=1e-4)


def test_other_class_count_gets_a_fresh_head_and_last_layer_truncates(lucid) -> None:
    path, state = lucid
    net = inception_v1(weights=str(path), num_classes=8, last_layer="mixed4a")
    assert net.fc.weight.shape == (8, 508) and "mixed4b" not in net.channels
    assert torch.equal(net.features.conv2d0.conv.weight, state["conv2d0_pre_relu_conv.weight"])
    with pytest.raises(ConfigError, match="width=0.25") as info:
        inception_v1(weights=str(path), width=0.25, batch_norm=True)
    assert "batch_norm" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("init", ["zero", "net2net"])
def test_widening_lucid_keeps_its_logits(lucid, init: str) -> None:
    path, _ = lucid
    base = inception_v1(weights=str(path), num_classes=1008)
    wide = inception_v1(weights=str(path), num_classes=1008, widen={"mixed3b_5x5": 8}, widen_init=init)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    change = max_output_change(base, wide, x)
    print(f"Lucid InceptionV1 +8 at mixed3b_5x5 ({init}): max |logit change| = {change:.2e}")
    assert wide.channels["mixed3b"] == 488 and change < 1e-3  # logits are O(100): float32 rounding only


def test_widened_pretrained_model_fine_tunes_with_old_units_frozen(lucid) -> None:
    path, _ = lucid
    base = inception_v1(weights=str(path), num_classes=5, last_layer="mixed3b").eval()
    wide = inception_v1(weights=str(path), num_classes=5, last_layer="mixed3b", widen={"mixed3b_5x5": 4},
                       freeze_old=True)  # fmt: skip
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    _, old = run_with_cache(base, x, names=["mixed3b"])
    _, new = run_with_cache(wide.eval(), x, names=["mixed3b"])
    assert torch.equal(new["mixed3b"][:, :416], old["mixed3b"][:, :416])  # 1x1, 3x3 and the old 5x5 units
    assert torch.equal(new["mixed3b"][:, 420:], old["mixed3b"][:, 416:])  # pool_reduce, shifted by the 4 new
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    opt = torch.optim.AdamW([p for p in wide.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    wide.train()
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(wide(x), y)
        loss.backward()
        opt.step()
    after = wide.state_dict()
    key = "features.mixed3b.conv_5x5.conv.weight"
    assert math.isfinite(float(loss.detach())) and not torch.equal(after[key][-4:], before[key][-4:])
    assert torch.equal(after[key][:-4], before[key][:-4]) and torch.equal(after["features.conv2d0.conv.weight"],
                                                                         before["features.conv2d0.conv.weight"])
    assert not torch.equal(after["fc.weight"], before["fc.weight"])  # a fresh head always trains


def test_wrong_shape_missing_and_unexpected_keys_are_one_line(lucid, tmp_path: Path) -> None:
    _, state = lucid
    bad = dict(state)
    bad["mixed3b_5x5_pre_relu_conv.weight"] = torch.zeros(95, 32, 5, 5)
    with pytest.raises(ConfigError) as info:
        inception_v1(weights=str(_save(tmp_path, bad)), num_classes=1008)
    message = str(info.value)
    assert "mixed3b_5x5_pre_relu_conv.weight: expected [96, 32, 5, 5], found [95, 32, 5, 5]" in message
    assert "\n" not in message
    bad = {k: v for k, v in state.items() if not k.startswith("conv2d0")} | {"foo.weight": torch.zeros(1)}
    with pytest.raises(ConfigError) as info:
        inception_v1(weights=str(_save(tmp_path, bad)), num_classes=1008)
    message = str(info.value)
    assert "2 missing keys (conv2d0_pre_relu_conv.weight, conv2d0_pre_relu_conv.bias)" in message
    assert "1 unexpected keys (foo.weight)" in message and "\n" not in message


def _mark(path: str) -> None:  # what unpickling the object below would call
    Path(path).write_text("code ran")


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_mark, (self.marker,))


def test_bad_files_are_refused_and_never_run_code(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    marker = tmp_path / "marker"
    cases = [
        (text, "is not a torch file"),
        (tmp_path / "nope.pth", "does not exist"),
        (_save(tmp_path, {"w": Evil(marker)}, "evil.pth"), "pickled Python objects"),
        (_save(tmp_path, [1, 2, 3], "list.pth"), "not a state dict"),
        (_save(tmp_path, {"epoch": 3, "optimizer": {}}, "ckpt.pth"), "not a state dict"),
    ]
    for path, words in cases:
        with pytest.raises(ConfigError) as info:
            inception_v1(weights=str(path), num_classes=1008)
        assert words in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    refused = pytest.raises(ConfigError, read_state_dict, tmp_path / "evil.pth").value
    assert "tests.test_pretrained._mark" in str(refused)  # names what it refused to call


def test_torchvision_weights_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)  # like the released file
    path = _save(tmp_path, {"model": src.state_dict(), "epoch": 90})
    net = torchvision_model("googlenet", num_classes=1000, weights=str(path))
    assert net.aux1 is None and torch.equal(net.fc.weight, src.fc.weight)
    assert torch.equal(net.inception5b.branch4[1].conv.weight, src.inception5b.branch4[1].conv.weight)
    few = torchvision_model("googlenet", num_classes=5, weights=str(path))  # a fresh head for 5 classes
    assert few.fc.weight.shape == (5, 1024) and torch.equal(few.conv1.conv.weight, src.conv1.conv.weight)
    wrong = _save(tmp_path, torchvision.models.resnet18(weights=None).state_dict(), "resnet.pth")
    with pytest.raises(ConfigError, match="missing keys") as info:
        torchvision_model("googlenet", weights=str(wrong))
    assert "conv1.conv.weight" in str(info.value) and "\n" not in str(info.value)


def test_config_keys_reach_the_loader(make_cfg, lucid, tmp_path: Path) -> None:
    path, state = lucid
    cfg = make_cfg("model=inception_v1", f"model.weights={path}", "model.num_classes=1008")
    net = build_model(cfg, num_classes=8, image_size=224)
    assert net.fc.out_features == 1008 and torch.equal(net.fc.bias, state["softmax2_pre_activation_matmul.bias"])
    for overrides, words in [
        (["model.widen_init=copy"], ["copy", "zero", "net2net"]),
        (["model.train_also=[fc]"], ["freeze_old"]),
        (["model.init_from=x.ckpt"], ["not both"]),
    ]:
        cfg = make_cfg("model=inception_v1", f"model.weights={path}", *overrides)
        with pytest.raises(Exception) as info:  # Hydra wraps what the target raises
            build_model(cfg, num_classes=8, image_size=224)
        message = str(config_error(info.value))
        assert all(w in message for w in words) and "\n" not in message, message
    with pytest.raises(Exception) as info:
        build_model(make_cfg("model.freeze_old=true"), num_classes=8, image_size=64)
    assert "needs trained weights" in str(config_error(info.value))


SMALL = ["logger=none", "test=false", "data.train_size=64", "data.val_size=32", "data.test_size=32",
         "data.batch_size=16", "trainer.num_sanity_val_steps=0"]  # fmt: skip


def test_init_from_a_run_widened_and_frozen_end_to_end(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*SMALL)
    train(cfg)
    ckpt = RunRecord.load(cfg.paths.output_dir)["checkpoints"]["last"]
    source, _ = load_net(ckpt)

    edits = [f"model.init_from={ckpt}", "+model.widen.mixed3b_5x5=4", "model.freeze_old=true"]
    cfg = make_cfg(*SMALL, "test=true", *edits)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "widened")  # the first run keeps its own folder
    start = hydra.utils.instantiate(cfg.model, num_classes=8)
    x = torch.rand(4, 3, 64, 64)
    assert max_output_change(source, start, x) < 1e-5
    train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    assert record["status"] == "finished" and record["model"]["channels"]["mixed3b_5x5"] == 24 + 4
    final, _ = load_net(record["checkpoints"]["last"])  # rebuilt from the checkpoint alone, plain (unfrozen) keys
    old, new, key = source.state_dict(), final.state_dict(), "features.mixed3b.conv_5x5.conv.weight"
    bn = "features.mixed3b.conv_5x5.bn."
    assert torch.equal(new[key][:24], old[key])  # the old units' weights, batch norm and statistics
    assert all(torch.equal(new[bn + p][:24], old[bn + p]) for p in ("weight", "bias", "running_mean", "running_var"))
    assert torch.equal(new["features.conv2d0.conv.weight"], old["features.conv2d0.conv.weight"])
    assert not torch.equal(new[key][24:], start.state_dict()[key][24:])  # the new units trained


def test_probe_runs_on_lucid_weights_without_training(lucid, tmp_path: Path) -> None:
    path, _ = lucid
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="probe", overrides=[
            "model=inception_v1", f"model.weights={path}", "model.last_layer=mixed3a", "image_size=48",
            "probes=[curves]", "probes.curves.random_init=false", "probes.curves.orientations=36",
            "probes.curves.radii=[0.1,0.2,0.3]", "probes.curves.layers=[conv2d2,mixed3a]",
            "probing.probe_set_size=4", f"paths.output_dir={tmp_path}"])  # fmt: skip
    GlobalHydra.instance().clear()
    metrics = probe(cfg)
    assert "curves/mixed3a/detectors" in metrics and "curves/conv2d2/detectors" in metrics
    record = RunRecord.load(tmp_path)
    assert record["model"]["channels"]["mixed3a"] == 256 and record["status"] == "finished"
