"""harness-suggest: each rule fires on a planted record and stays silent on a neutral one; skips, ranking,
per-unit tables -> branch keys, overrides that harness-train accepts, and the CLI on run / multirun dirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from harness.facts.edits import plan_inception
from harness.facts.overrides import Edit
from harness.models import layers as channels_of
from harness.suggest.cli import main
from harness.suggest.config import load_config
from harness.suggest.load import load_run
from harness.suggest.rules import RULES, MissingInputs, suggest
from harness.train import CONF_DIR, build_model
from tests.helpers import write_record

CLASSES = ["arc_r4", "arc_r7", "arc_r12", "arc_r20", "line", "corner", "wave", "texture"]
MODEL = {"_target_": "harness.models.InceptionV1", "num_classes": None, "width": 0.25, "batch_norm": True,
         "lrn": False, "dropout": 0.0, "last_layer": "mixed4b", "widen": {}, "insert": []}  # fmt: skip
# Nothing here should make any rule fire.
NEUTRAL: dict[str, float] = {
    **{f"curves/{la}/detectors": 1.0 for la in ("conv2d2", "mixed3a", "mixed3b", "mixed4a")},
    **{f"curves/{la}/detectors_random_init": 1.0 for la in ("conv2d2", "mixed3a", "mixed3b", "mixed4a")},
    **{f"activations/{b}/dead_fraction": 0.0 for b in ("conv2d0", "mixed3b_5x5", "mixed4a_3x3")},
    **{f"linear/{la}/{t}_acc": 0.5 for la in ("mixed3a", "mixed3b", "mixed4a", "mixed4b")
       for t in ("curvature", "class")},
    "lineage/mixed3b_5x5/added/other": 8.0, "lineage/mixed3b_5x5/added/other_frac": 1.0,
    **{f"val/acc/{c}": 0.9 for c in CLASSES},
}  # fmt: skip
# rule -> (metrics that trigger it, the run's widen edits, the edit it must propose)
CASES: dict[str, tuple[dict[str, float], dict[str, int], Edit]] = {
    "curve_cluster": ({"curves/mixed3b/detectors": 13.0, "curves/mixed3b/detectors_random_init": 1.0,
                       "curves/mixed3b/orientation_coverage": 0.62, "curves/mixed3b_5x5/detectors": 9.0},
                      {}, Edit("widen", "mixed3b_5x5", 12)),
    "prune_dead": ({"activations/mixed4a_3x3/dead_fraction": 0.41}, {}, Edit("widen", "mixed4a_3x3", -21)),
    "insert_at_jump": ({"linear/mixed3b/curvature_acc": 0.61, "linear/mixed4a/curvature_acc": 0.93}, {},
                       Edit("insert", "mixed3b")),
    "lineage": ({"lineage/mixed3b_5x5/added/curve_detector": 9.0,
                 "lineage/mixed3b_5x5/added/curve_detector_frac": 0.5625,
                 "lineage/mixed3b_5x5/added/other": 7.0, "lineage/mixed3b_5x5/added/other_frac": 0.4375},
                {"mixed3b_5x5": 16}, Edit("widen", "mixed3b_5x5", 16)),
    "class_weakness": ({"val/acc/arc_r12": 0.2, "val/acc/arc_r7": 0.3}, {}, Edit("widen", "mixed3b_5x5", 12)),
}  # fmt: skip


def plant(run_dir: Path, metrics: dict[str, float], widen: dict | None = None, insert: list | None = None,
          variant: str = "base", seed: int = 0, started: str = "2026-01-01T00:00:00",
          tables: dict[str, list[dict[str, Any]]] | None = None) -> Path:  # fmt: skip
    """A finished run record (plus optional per-unit probe tables) like harness-train writes."""
    model = {**MODEL, "widen": dict(widen or {}), "insert": list(insert or [])}
    channels = plan_inception(0.25, model["widen"], model["insert"], "mixed4b").channels
    return write_record(run_dir.parent, run_dir.name, variant=variant, seed=seed, metrics=metrics, tables=tables,
                        config={"model": model}, model={"channels": channels}, started=started,
                        classes=CLASSES)  # fmt: skip


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_fires_on_planted_record_and_cites_its_metrics(rule, cfg, tmp_path) -> None:
    metrics, widen, expected = CASES[rule]
    run = load_run(plant(tmp_path, {**NEUTRAL, **metrics}, widen=widen) / "record.json")
    found = RULES[rule](run, cfg)
    assert [s.edit for s in found] == [expected]
    assert next(iter(metrics)) in found[0].used  # the decisive planted metric is cited ...
    for key, value in found[0].used.items():  # ... and every cited key appears in the evidence with its value
        assert key in " ".join(found[0].evidence) and run.metrics[key] == value


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_is_silent_on_neutral_record(rule, cfg, tmp_path) -> None:
    run = load_run(plant(tmp_path, NEUTRAL, widen={"mixed3b_5x5": 8}) / "record.json")
    assert RULES[rule](run, cfg) == []


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_without_inputs_is_skipped(rule, cfg, tmp_path) -> None:
    run = load_run(plant(tmp_path, {"val/acc": 0.5}) / "record.json")
    with pytest.raises(MissingInputs) as err:
        RULES[rule](run, cfg)
    assert err.value.needs
    _, skipped = suggest(run, cfg)
    assert rule in [name for name, _ in skipped]


def test_prune_keeps_at_least_one_channel_and_lineage_undoes_waste(cfg, tmp_path) -> None:
    run = load_run(plant(tmp_path / "a", {"activations/mixed3b_5x5_bottleneck/dead_fraction": 1.0}) / "record.json")
    assert [s.edit for s in RULES["prune_dead"](run, cfg)] == [Edit("widen", "mixed3b_5x5_bottleneck", -7)]
    waste = {"lineage/mixed3b_5x5/added/dead": 12.0, "lineage/mixed3b_5x5/added/dead_frac": 0.75,
             "lineage/mixed3b_5x5/added/other": 4.0, "lineage/mixed3b_5x5/added/other_frac": 0.25}  # fmt: skip
    run = load_run(plant(tmp_path / "b", waste, widen={"mixed3b_5x5": 16}) / "record.json")
    (s,) = RULES["lineage"](run, cfg)
    assert s.edit == Edit("widen", "mixed3b_5x5", -12) and "stop widening" in s.evidence[0]


def test_ranking_and_merging_on_planted_record(cfg, tmp_path) -> None:
    metrics = {**NEUTRAL, "activations/mixed4a_3x3/dead_fraction": 0.6,  # score 0.6
               "linear/mixed3b/class_acc": 0.5, "linear/mixed4a/class_acc": 0.8,  # score 0.3
               **CASES["curve_cluster"][0]}  # score 12/12 x (1 - 0.62 / 2)  # fmt: skip
    metrics.update({f"val/acc/{c}": 0.5 for c in ("arc_r4", "arc_r7", "arc_r12", "arc_r20", "wave")})  # gap 0.4
    ranked, skipped = suggest(load_run(plant(tmp_path, metrics) / "record.json"), cfg)
    assert [(s.edit.kind, s.edit.target) for s in ranked] == [
        ("widen", "mixed3b_5x5"), ("widen", "mixed4a_3x3"), ("insert", "mixed3b")]  # fmt: skip
    top = ranked[0]
    assert top.rules == ["curve_cluster", "class_weakness"] and len(top.evidence) == 2
    assert top.score == pytest.approx((1 - 0.5 * 0.62) + 0.4)  # agreeing rules add up
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert [name for name, _ in skipped] == []


def test_unit_tables_give_branch_keys(tmp_path) -> None:
    # mixed3b concat: 1x1 [0, 32), 3x3 [32, 80), 5x5 [80, 104), pool_reduce [104, 120)
    acts = [{"layer": "mixed3b", "unit": u, "dead": u in range(80, 92), "mean": 0, "max": 0, "frac_active": 0}
            for u in range(120)]  # fmt: skip
    curves = [
        {
            "layer": "mixed3b",
            "unit": u,
            "is_curve_detector": u in (81, 85, 100, 3),
            "preferred_orientation": {81: 10.0, 85: 100.0, 100: 95.0, 3: 359.0}.get(u, 0.0),
        }
        for u in range(120)
    ]
    run = load_run(plant(tmp_path, {}, tables={"activations": acts, "curves": curves}) / "record.json")
    m = run.metrics
    assert m["activations/mixed3b_5x5/dead_fraction"] == 0.5 and m["activations/mixed3b_1x1/dead_fraction"] == 0.0
    assert m["curves/mixed3b_5x5/detectors"] == 3 and m["curves/mixed3b_1x1/detectors"] == 1
    # the probe's own bins, centred on 0: 10 and 359 deg share bin 0, 95 and 100 deg bin 90
    assert m["curves/mixed3b/orientation/0"] == 2 and m["curves/mixed3b/orientation/90"] == 2
    assert m["curves/mixed3b/orientation/315"] == 0 and m["curves/mixed3b/orientation/180"] == 0


@pytest.mark.parametrize(
    "preferred",
    [[10.0, 359.0, 95.0, 100.0], [40.0, 50.0, 130.0, 200.0, 290.0], [22.0, 23.0, 337.0, 338.0], [0.0]],
)
def test_orientation_coverage_and_named_gaps_agree(preferred, cfg, tmp_path) -> None:
    """The curve_cluster rule prints coverage and gaps: the gaps must name exactly the bins coverage leaves out."""
    from harness.facts.keys import COVERAGE_BINS, orientation_coverage

    curves = [{"layer": "mixed3b", "unit": u, "is_curve_detector": u < len(preferred),
               "preferred_orientation": preferred[u] if u < len(preferred) else 0.0} for u in range(120)]  # fmt: skip
    coverage = orientation_coverage(preferred)  # what the probe reports (CurveCensus uses the same bins)
    metrics = {"curves/mixed3b/detectors": 13.0, "curves/mixed3b/detectors_random_init": 1.0,
               "curves/mixed3b/orientation_coverage": coverage}  # fmt: skip
    run = load_run(plant(tmp_path, metrics, tables={"curves": curves}) / "record.json")
    (s,) = [s for s in RULES["curve_cluster"](run, cfg)]
    text = " ".join(s.evidence)
    assert f"orientation coverage {coverage:.2f}" in text or f"orientation coverage {int(coverage)}" in text
    gaps = text.split("gaps at ")[1].split(" deg")[0].split(", ")
    empty = 0
    for gap in gaps:  # each named gap spans whole 45-degree bins, possibly across 0
        lo, hi = (float(x) for x in gap.split("-"))
        empty += round(((hi - lo) % 360) / (360 / COVERAGE_BINS))
    assert empty == round((1 - coverage) * COVERAGE_BINS) > 0
    if preferred[0] == 40.0:  # bins starting at 0 would cover 0, 45, 90, 180, 270 here: 3 gaps, coverage 0.62
        assert coverage == 0.5 and gaps == ["292.5-22.5", "67.5-112.5", "202.5-247.5"]


def _compose_and_build(overrides: list[str]) -> dict[str, int]:
    """Compose the real conf/train.yaml with the overrides, build the model, return its channels."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    return channels_of(build_model(cfg, num_classes=8, image_size=64))


def test_suggested_overrides_apply_and_compose(cfg, tmp_path) -> None:
    base = _compose_and_build([])
    metrics = {**CASES["curve_cluster"][0], **CASES["insert_at_jump"][0]}
    ranked, _ = suggest(load_run(plant(tmp_path / "a", metrics) / "record.json"), cfg)
    for s in ranked:
        assert s.problem is None and s.next_run == [s.edit.incremental()]  # no edits yet: incremental == full
        OverridesParser.create().parse_overrides(s.next_run)
        got = _compose_and_build(s.next_run)
        if s.edit.kind == "widen":
            assert got[s.edit.target] == base[s.edit.target] + s.edit.amount
        else:
            assert "mixed3b_ins1" in got and got["mixed4a"] == base["mixed4a"]
    # a run that already has edits: the next-run set keeps them and adds the new one
    run = load_run(plant(tmp_path / "b", metrics, widen={"mixed3b_5x5": 8, "mixed4a_1x1": 4}, insert=["mixed3b"])
                   / "record.json")  # fmt: skip
    by_kind = {s.edit.kind: s for s in suggest(run, cfg)[0]}
    assert by_kind["widen"].edit == Edit("widen", "mixed3b_5x5", 16)  # half of the current 32 channels
    assert by_kind["widen"].next_run == ["+model.widen.mixed3b_5x5=24", "+model.widen.mixed4a_1x1=4",
                                         "model.insert=[mixed3b]"]  # fmt: skip
    assert by_kind["insert"].next_run[-1] == "model.insert=[mixed3b,mixed3b]"
    got = _compose_and_build(by_kind["insert"].next_run)
    assert got["mixed3b_ins2"] and got["mixed3b_5x5"] == base["mixed3b_5x5"] + 8


def test_negative_widen_override(cfg, tmp_path) -> None:
    """Pruning is a negative widen (harness/facts/edits.py): the override parses, is valid, and builds."""
    run = load_run(plant(tmp_path, CASES["prune_dead"][0]) / "record.json")
    (s,) = suggest(run, cfg)[0]
    assert s.next_run == ["+model.widen.mixed4a_3x3=-21"]
    (parsed,) = OverridesParser.create().parse_overrides(s.next_run)
    assert parsed.key_or_group == "model.widen.mixed4a_3x3" and parsed.value() == -21
    assert s.problem is None  # pruning is supported: a suggestion marked invalid here is a regression
    assert _compose_and_build(s.next_run)["mixed4a_3x3"] == 51 - 21


def test_cli_run_dir_multirun_dir_json_and_errors(tmp_path, capsys) -> None:
    run_dir = plant(tmp_path / "run", {**NEUTRAL, **CASES["prune_dead"][0]})
    main([str(run_dir)])
    out = capsys.readouterr().out
    assert "1. +model.widen.mixed4a_3x3=-21   activations: 41% dead units in mixed4a_3x3" in out
    assert "skipped:" not in out
    main([str(plant(tmp_path / "bare", {"val/acc": 0.5}))])
    assert "skipped: lineage: needs lineage/<branch>/added/" in capsys.readouterr().out

    multi = tmp_path / "multirun"
    weak = {**NEUTRAL, "val/acc/arc_r12": 0.1}
    for i, (variant, seed, acc, extra) in enumerate([("base", 0, 0.6, {}), ("base", 1, 0.62, {}),
                                                     ("wide", 0, 0.7, {"val/acc/arc_r7": 0.3}),
                                                     ("wide", 1, 0.72, {"val/acc/arc_r7": 0.1})]):  # fmt: skip
        plant(multi / str(i), {**weak, **extra, "val/acc": acc}, widen={"mixed3b_5x5": 8} if variant == "wide" else {},
              variant=variant, seed=seed, started=f"2026-01-01T00:00:0{i}")  # fmt: skip
    main([str(multi), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["variant"] == "wide" and doc["seeds"] == [0, 1]
    (s,) = doc["suggestions"]
    assert s["metrics"]["val/acc/arc_r7"] == pytest.approx(0.2)  # seed mean
    assert s["next_run"] == ["+model.widen.mixed3b_5x5=24"] and s["override"] == "+model.widen.mixed3b_5x5=16"
    main([str(multi), "pick=latest", "class_gap=0.5"])
    out = capsys.readouterr().out
    assert "no suggestions" in out and "chose 'wide'" in out

    for argv in ([str(tmp_path / "empty")], [str(run_dir), "no_such_key=1"]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1


# The first line is the command to run: for a run that already has edits, the composed override set (the run's
# edits plus the suggestion), not the increment.
def test_top_line_is_the_composed_override_to_run(tmp_path, capsys) -> None:
    weak = {**NEUTRAL, "val/acc/arc_r12": 0.1, "val/acc/arc_r7": 0.2}
    run = plant(tmp_path / "run", weak, widen={"mixed3b_5x5": 8}, variant="model.widen.mixed3b_5x5=8")
    main([str(run)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "harness-train +model.widen.mixed3b_5x5=24", lines[:3]
    numbered = next(line for line in lines if line.startswith("1. "))
    assert numbered.startswith("1. +model.widen.mixed3b_5x5=24   ")
    assert "   adds +model.widen.mixed3b_5x5=16 to the current edits" in lines


def test_run_without_edits_runs_the_increment(tmp_path, capsys) -> None:
    run = plant(tmp_path / "run", {**NEUTRAL, "activations/mixed4a_3x3/dead_fraction": 0.41})
    main([str(run)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "harness-train +model.widen.mixed4a_3x3=-21"
    assert not any("adds" in line for line in lines)
