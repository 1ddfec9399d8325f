"""harness-suggest on a model other than InceptionV1: findings at a probe layer (a ResNet block output) become a
widen of the conv the record says grows it, printed with the overrides selecting the model; what cannot be done
on such a model (pruning, inserts) is skipped with the reason; and end to end, the printed command trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.facts.overrides import Edit, check, model_overrides
from harness.suggest.cli import main
from harness.suggest.config import load_config
from harness.suggest.load import load_run
from harness.suggest.rules import RULES, suggest
from tests.helpers import write_record

CLASSES = ["arc_high", "arc_low", "line", "corner", "closed_curve", "wave", "spiral", "texture"]
RESNET = {"_target_": "harness.models.torchvision_model", "name": "resnet18", "num_classes": None, "weights": None}
BLOCKS = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
WIDTHS = {f"layer{i}.{j}": 64 * 2 ** (i - 1) for i in range(1, 5) for j in range(2)}
# What harness-train records for resnet18 (harness.models.consumers.growth_facts): each block grows at its conv1.
FACTS = {
    "widen_targets": {f"{b}.conv1": w for b, w in WIDTHS.items()},
    "grow_at": {b: f"{b}.conv1" for b in BLOCKS},
    "channels": {"conv1": 64, **{f"{b}.{c}": w for b, w in WIDTHS.items() for c in ("conv1", "conv2")}, "fc": 8},
}
NEUTRAL = {
    **{f"curves/{b}/detectors": 1.0 for b in BLOCKS},
    **{f"curves/{b}/detectors_random_init": 1.0 for b in BLOCKS},
    **{f"val/acc/{c}": 0.9 for c in CLASSES},
}
CLUSTER = {"curves/layer2.0/detectors": 9.0, "curves/layer2.0/orientation_coverage": 0.5}


def plant(run_dir: Path, metrics: dict[str, float], widen: dict | None = None, facts: dict | None = None) -> Path:
    """A finished resnet18 run record like harness-train writes (widen in Hydra's nested spelling)."""
    return write_record(run_dir.parent, run_dir.name, metrics=metrics, started="2026-01-01T00:00:00", classes=CLASSES,
                        config={"model": {**RESNET, **({"widen": widen} if widen else {})}},
                        model=dict(FACTS if facts is None else facts))  # fmt: skip


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_block_findings_widen_the_conv_growing_the_block(cfg, tmp_path) -> None:
    run = load_run(plant(tmp_path, {**NEUTRAL, **CLUSTER}) / "record.json")
    (s,) = RULES["curve_cluster"](run, cfg)
    assert s.edit == Edit("widen", "layer2.0.conv1", 64)  # widen_fraction 0.5 of its 128 channels
    assert "layer2.0 holds 8 of 8 curve detectors" in s.evidence[0] and "widen layer2.0.conv1" in s.evidence[0]
    weak = {**NEUTRAL, "val/acc/wave": 0.2, "val/acc/spiral": 0.3}
    assert RULES["class_weakness"](load_run(plant(tmp_path / "w", weak) / "record.json"), cfg) == []  # no layer2.0
    weak_cfg = load_config(["curve_layer=layer2.0"])  # where curve capacity goes when no layer has detectors
    (w,) = RULES["class_weakness"](load_run(plant(tmp_path / "w", weak) / "record.json"), weak_cfg)
    assert w.edit == Edit("widen", "layer2.0.conv1", 64)
    ranked, skipped = suggest(load_run(plant(tmp_path / "n", NEUTRAL) / "record.json"), cfg)
    assert ranked == [] and [name for name, _ in skipped] == ["prune_dead", "insert_at_jump", "lineage"]  # control


def test_inception_only_rules_skip_with_the_reason_and_the_command_selects_the_model(tmp_path, capsys) -> None:
    dead = {f"activations/{b}/dead_fraction": 0.6 for b in BLOCKS}
    run_dir = plant(tmp_path, {**NEUTRAL, **CLUSTER, **dead, "linear/layer1.0/class_acc": 0.2,
                               "linear/layer1.1/class_acc": 0.9})  # fmt: skip
    main([str(run_dir)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "harness-train model=torchvision model.name=resnet18 +model.widen.layer2.0.conv1=64"
    assert "skipped: prune_dead: needs an InceptionV1 model (pruning: model.widen on other models only adds units)" in (
        lines)  # fmt: skip
    assert "skipped: insert_at_jump: needs an InceptionV1 model (model.insert)" in lines
    main([str(run_dir), "--json"])
    assert json.loads(capsys.readouterr().out)["model_overrides"] == ["model=torchvision", "model.name=resnet18"]


def test_edits_compose_with_the_run_widen_and_bad_ones_are_marked(cfg, tmp_path) -> None:
    grown = {"layer2.0.conv1": 192}  # the record of a run that widened it by 64 lists its widths as built
    facts = {**FACTS, "widen_targets": {**FACTS["widen_targets"], **grown}, "channels": {**FACTS["channels"], **grown}}
    run_dir = plant(tmp_path, {**NEUTRAL, **CLUSTER}, widen={"layer2": {"0": {"conv1": 64}}}, facts=facts)
    (s,) = suggest(load_run(run_dir / "record.json"), cfg)[0]
    assert s.next_run == ["+model.widen.layer2.0.conv1=160"] and s.problem is None  # 64 + half of 192
    waste = {
        "lineage/layer2.0.conv1/added/dead": 48.0,
        "lineage/layer2.0.conv1/added/dead_frac": 0.75,
        "lineage/layer2.0.conv1/added/other": 16.0,
    }
    run = load_run(plant(tmp_path / "b", waste, widen={"layer2": {"0": {"conv1": 64}}}, facts=facts) / "record.json")
    (stop,) = suggest(run, cfg)[0]  # undoing most of a widen is a smaller widen of the same base: accepted
    assert stop.edit == Edit("widen", "layer2.0.conv1", -48) and stop.next_run == ["+model.widen.layer2.0.conv1=16"]
    assert stop.problem is None
    targets = FACTS["widen_targets"]
    assert "only adding units" in check(RESNET, {"layer2.0.conv1": -8}, [], targets)
    assert "not a widen target of this model; valid: layer1.0.conv1" in check(
        RESNET, {"layer2.0.conv2": 8}, [], targets
    )
    assert check(RESNET, {}, ["layer2.0"], targets) == "model.insert works on InceptionV1 only"
    untraced = load_run(
        plant(
            tmp_path / "c",
            {**NEUTRAL, **CLUSTER},
            facts={"channels": FACTS["channels"], "widen_targets": {}, "widen_error": "MyNet is not traceable"},
        )
        / "record.json"
    )
    assert ("curve_cluster", ["model.widen_targets of a model torch.fx can trace: MyNet is not traceable"]) in (
        suggest(untraced, cfg)[1])  # fmt: skip


def test_model_overrides_name_the_option_and_what_differs() -> None:
    assert model_overrides({**RESNET, "name": "vgg11_bn"}) == ["model=torchvision", "model.name=vgg11_bn"]
    custom = {"_target_": "mynet.MyNet", "num_classes": None, "weights": None, "widen": {}, "width": 5}
    assert model_overrides(custom) == ["model=custom", "model._target_=mynet.MyNet", "+model.width=5"]
    assert model_overrides({"_target_": "harness.models.build.inception_v1", "width": 0.5}) == []


def test_harness_suggest_on_a_trained_resnet18_prints_a_command_that_trains(make_cfg, tmp_path, capsys) -> None:
    """Train resnet18 (tiny), suggest on its run dir, run the printed command: it trains and the conv is wider."""
    from harness.train import train

    tiny = ["data.image_size=32", "logger=none", "probes=[activations]", "probing.probe_set_size=16",
            "probing.every_n_epochs=0", "probing.budget_s=null"]  # fmt: skip
    cfg = make_cfg("model=torchvision", "model.name=resnet18", *tiny)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    record = json.loads((run_dir / "record.json").read_text())
    assert record["model"]["grow_at"]["layer2.0"] == "layer2.0.conv1"  # what the suggestion will read
    # class_gap=-1: class_weakness fires whatever one epoch learnt; curve_layer: where it goes without a cluster
    main([str(run_dir), "class_gap=-1", "curve_layer=layer2.0"])
    command = capsys.readouterr().out.splitlines()[0].split()
    assert command[:3] == ["harness-train", "model=torchvision", "model.name=resnet18"], command
    (edit,) = [o for o in command if o.startswith("+model.widen.")]
    target, n = edit[len("+model.widen.") :].split("=")
    assert target in record["model"]["widen_targets"] and int(n) >= 8

    again = make_cfg(*command[1:], *tiny[:2], "probes=none", "data.train_size=64", "test=false")
    again.paths.output_dir = str(tmp_path / "next")
    metrics, objects = train(again)
    net = objects["module"].net
    assert net.get_submodule(target).out_channels == record["model"]["channels"][target] + int(n)
    assert json.loads((tmp_path / "next" / "record.json").read_text())["status"] == "finished"
    assert 0.0 <= metrics["val/acc"] <= 1.0
