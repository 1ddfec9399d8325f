"""harness-compare on synthetic run records with planted answers: a 10-sd effect is flagged, nulls are not,
BH correction is applied, the effect size matches a hand computation, failed/running runs and missing
metrics are listed but never compared, and user errors exit 2 with one line."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

from harness.compare import compare
from harness.compare.cli import main
from harness.compare.load import Run
from harness.compare.stats import metric_effect, variant_effects
from harness.compare.variants import choose_baseline, split_overrides, variant_labels
from harness.facts.runs import flatten
from harness.facts.stats import bh_adjust, separated_p
from tests.helpers import BASE, PLANTED, WIDE, make_experiment, write_record


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    root = make_experiment(tmp_path_factory.mktemp("multirun"))
    return compare([root])


def effects_by_metric(result, variant: str = WIDE) -> dict:
    return {e.metric: e for e in result.effects[variant]}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_planted_effect_is_flagged_and_null_is_not(compared) -> None:
    assert compared.baseline == BASE  # chosen by config (widen all 0), not by order
    effects = effects_by_metric(compared)
    planted, null = effects[PLANTED], effects["null/a"]
    assert planted.diff == pytest.approx(10.0) and planted.effect == pytest.approx(10.0)
    assert planted.beyond_noise is True and planted.q < 0.05
    assert null.beyond_noise is None and null.role == "exploratory" and null.p > 0.5  # not a headline metric
    assert effects["curves/mixed3a/detectors"].beyond_noise is None  # identical distributions
    assert "lr-AdamW" not in effects and "curves/seconds" not in effects  # bookkeeping is not tested
    assert "model/params/total" in effects  # model/params/* are metrics too


def test_effect_size_and_welch_p_match_hand_computation() -> None:
    e = metric_effect("m", [1.0, 2.0, 3.0], [4.0, 6.0, 8.0])
    assert (e.base_mean, e.variant_mean, e.diff) == (2.0, 6.0, 4.0)
    assert (e.base_sd, e.variant_sd) == (pytest.approx(1.0), pytest.approx(2.0))
    assert e.effect == pytest.approx(4.0 / math.sqrt((2 * 1.0 + 2 * 4.0) / 4))  # pooled sd sqrt(2.5): 2.5298
    se2 = 1.0 / 3 + 4.0 / 3  # Welch: s1²/n1 + s2²/n2
    dof = se2**2 / ((1.0 / 3) ** 2 / 2 + (4.0 / 3) ** 2 / 2)
    assert e.p == pytest.approx(2 * sps.t.sf(4.0 / math.sqrt(se2), dof))


def test_bh_adjust_matches_hand_computation() -> None:
    assert bh_adjust([0.01, 0.02, 0.03, 0.5]) == pytest.approx([0.04, 0.04, 0.04, 0.5])
    assert bh_adjust([]) == []


def _runs(variant: str, columns: dict[str, list[float]]) -> list[Run]:
    n = len(next(iter(columns.values())))
    return [Run(Path(f"{variant}{i}"), "finished", variant, i, {k: v[i] for k, v in columns.items()}) for i in range(n)]


def test_bh_correction_unflags_a_lone_borderline_p_among_nulls() -> None:
    base = {f"null{i}": [0.0, 1.0, 2.0] for i in range(9)} | {"edge": [0.0, 1.0, 2.0]}
    wide = {f"null{i}": [0.1, 1.1, 2.1] for i in range(9)} | {"edge": [2.4, 3.4, 4.4]}  # t=2.94, 4 dof: p~0.04
    effects = {e.metric: e for e in variant_effects(_runs("b", base), _runs("w", wide))}
    edge = effects["edge"]
    assert 0.03 < edge.p < 0.05
    assert edge.q == pytest.approx(edge.p * 10)  # smallest of 10 p-values
    assert edge.beyond_noise is False
    # negative control: alone, the same metric is beyond noise, so the correction is what unflagged it
    (alone,) = variant_effects(_runs("b", {"edge": base["edge"]}), _runs("w", {"edge": wide["edge"]}))
    assert alone.p == pytest.approx(edge.p) and alone.beyond_noise is True


def test_constant_sides_use_exact_permutation_p() -> None:
    assert separated_p(2, 2) == pytest.approx(1 / 3) and separated_p(5, 5) == pytest.approx(2 / 252)
    (two,) = variant_effects(_runs("b", {"m": [0.0, 0.0]}), _runs("w", {"m": [0.125, 0.125]}))
    assert two.p == pytest.approx(1 / 3) and two.beyond_noise is False and two.effect == math.inf
    (five,) = variant_effects(_runs("b", {"m": [0.0] * 5}), _runs("w", {"m": [1.0] * 5}))
    assert five.beyond_noise is True
    (same,) = variant_effects(_runs("b", {"m": [1.0] * 3}), _runs("w", {"m": [1.0] * 3}))
    assert same.p is None and same.note == "identical in every run"


def test_failed_and_running_runs_are_listed_but_not_compared(compared) -> None:
    rows = read_csv(compared.out_dir / "summary.csv")
    assert [r["status"] for r in rows].count("failed") == 1 and [r["status"] for r in rows].count("running") == 1
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error"] == "RuntimeError: CUDA out of memory" and failed["variant"] == WIDE
    planted = effects_by_metric(compared)[PLANTED]
    assert (planted.n_base, planted.n_variant) == (3, 3)  # running (-50) and failed (1000) runs left out
    assert planted.variant_mean == pytest.approx(13.0) and planted.base_mean == pytest.approx(3.0)
    assert "1 failed" in compared.headline.text and "1 running" in compared.headline.text


def test_missing_metric_is_an_empty_cell_and_counts_fewer_seeds(compared) -> None:
    rows = read_csv(compared.out_dir / "summary.csv")
    key = "dissect/mixed3b/unique_concepts"
    assert sum(r[key] == "" for r in rows if r["status"] == "finished") == 2  # absent key and null value
    e = effects_by_metric(compared)[key]
    assert (e.n_base, e.n_variant) == (2, 2)
    lineage = effects_by_metric(compared)["lineage/mixed3b_5x5/added/dead"]  # probe scalar, only in the variant
    assert lineage.note == "missing in baseline" and lineage.p is None
    effects = read_csv(compared.out_dir / "effects.csv")
    assert next(r for r in effects if r["metric"] == "lineage/mixed3b_5x5/added/dead")["p"] == ""


def test_headline_counts_and_verdict(compared) -> None:
    data = json.loads((compared.out_dir / "headline.json").read_text())
    (entry,) = data["variants"]
    assert entry["label"] == "model.widen.mixed3b_5x5=8" and data["baseline_label"] == "base"
    assert PLANTED in entry["beyond_noise"] and "null/a" not in entry["beyond_noise"]
    assert entry["verdict"]["metric"] == "test/acc" and entry["verdict"]["beyond_noise"] is False
    line = (
        f"{entry['findings']} findings beyond noise (replication needs 4+ seeds per side) in a family of "
        f"{entry['metrics_tested']} tests"
    )
    assert line in (compared.out_dir / "headline.txt").read_text()
    assert "test/acc 0.620 → 0.623 (not significant" in entry["text"]


def test_one_seed_per_variant_has_no_p_values(tmp_path: Path) -> None:
    for i, (variant, widen) in enumerate((("base", 0), ("wide", 8))):
        metrics = {"val/acc": 0.5 + 0.1 * i, PLANTED: 3.0 + i}
        write_record(tmp_path / "mr", str(i), variant=variant, widen={"b": widen}, metrics=metrics,
                     test={"test/acc": 0.6 + 0.1 * i})  # fmt: skip
    result = compare([tmp_path / "mr"], out=tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "effects.csv")
    assert rows and all(r["p"] == "" and r["q_bh"] == "" and r["beyond_noise"] == "" for r in rows)
    assert next(r for r in rows if r["metric"] == "val/acc")["diff"] != ""
    assert (
        "no test possible" in result.headline.lines[1]
        and "effect sizes only" in result.headline.lines[1]
        and "test/acc 0.600 → 0.700" in result.headline.lines[1]
    )
    assert json.loads((tmp_path / "out" / "headline.json").read_text())["variants"][0]["p_values"] is False


def test_variant_labels_drop_shared_overrides() -> None:
    assert split_overrides("a=1,probes=[curves,cka],b='x,y'") == ["a=1", "probes=[curves,cka]", "b='x,y'"]
    assert variant_labels([BASE, WIDE]) == {BASE: "base", WIDE: "model.widen.mixed3b_5x5=8"}
    assert variant_labels(["base", "model.widen.x=8"]) == {"base": "base", "model.widen.x=8": "model.widen.x=8"}
    assert variant_labels(["only=1"]) == {"only=1": "only=1"}


def test_baseline_choice() -> None:
    def run(variant: str, widen: dict) -> Run:
        return Run(Path(variant), "finished", variant, 0, widen=widen)

    plain_twice = [run("base", {}), run("other", {"b": 0}), run("wide", {"b": 8})]
    assert choose_baseline(plain_twice, {}) == "base"  # several unedited variants: the one named base
    assert choose_baseline(plain_twice, {"wide": "w"}, "w") == "wide"  # --baseline by label
    with pytest.raises(ValueError, match="pass --baseline with one of: 'a', 'b'"):
        choose_baseline([run("a", {"x": 1}), run("b", {"x": 2})], {})


def test_flatten_metrics_merges_sources_without_duplicates() -> None:
    record = {"metrics": {"val/acc": 0.5, "curves/l/detectors": None, "tag": "text"}, "test": {"test/acc": 0.6},
              "model": {"params/total": 10, "channels": {"l": 4}},
              "probes": {"curves": {"scalars": {"l/detectors": 3, "l/extra": 1}}}}  # fmt: skip
    assert flatten(record) == {
        "val/acc": 0.5, "curves/l/detectors": 3.0, "test/acc": 0.6, "model/params/total": 10.0, "curves/l/extra": 1.0,
    }  # fmt: skip


def test_cli_writes_every_output_in_process(compared, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main([str(compared.runs[0].run_dir.parent), "--out", str(out), "--baseline", "base"]) == 0
    for name in ("summary.csv", "effects.csv", "headline.txt", "headline.json", "report.html"):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "plots").glob("*.png")} == {"curves.png", "dissect.png", "cka.png",
                                                               "acc_per_class.png", "lineage.png"}  # fmt: skip
    printed = capsys.readouterr().out
    assert "findings beyond noise" in printed and "failed" in printed and PLANTED in printed


def test_cli_user_errors_exit_2_with_one_line(tmp_path: Path, compared, capsys) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no record.json found") and str(tmp_path / "empty") in err and err.count("\n") == 1
    assert main([str(compared.runs[0].run_dir.parent), "--out", str(tmp_path / "o"), "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'base'" in err and "'model.widen.mixed3b_5x5=8'" in err
    assert not (tmp_path / "o").exists()


def test_console_script_and_module_entry_points(compared, tmp_path: Path) -> None:
    exe = shutil.which("harness-compare")
    cmd = [exe] if exe else [sys.executable, "-m", "harness.compare"]
    good = subprocess.run([*cmd, str(compared.runs[0].run_dir.parent), "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "c" / "report.html").is_file()
    bad = subprocess.run([sys.executable, "-m", "harness.compare", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"error: no such file or directory: {tmp_path / 'missing'}"]


# --- what real run folders contain: rich markup in error texts, folders without a record.json -------------
BRACKETED = "RuntimeError: failed at [/__w/pytorch/pytorch/aten/src/ATen/native/Conv.cpp:12] [bold]x[/bold]"


def _real_runs(root: Path) -> list[Path]:
    dirs = []
    for seed in range(2):
        dirs.append(write_record(root, f"base{seed}", seed=seed, metrics={"val/acc": 0.5 + 0.01 * seed}))
        dirs.append(write_record(root, f"wide{seed}", variant="model.widen.mixed3b_5x5=8", seed=seed,
                                 metrics={"val/acc": 0.6 + 0.01 * seed}, widen={"mixed3b_5x5": 8}))  # fmt: skip
    dirs.append(write_record(root, "crashed", variant="model.widen.mixed3b_5x5=8", seed=5, status="failed",
                             error=BRACKETED, widen={"mixed3b_5x5": 8}))  # fmt: skip
    return dirs


def test_bracketed_error_text_is_printed_not_parsed(tmp_path: Path, capsys) -> None:
    dirs = _real_runs(tmp_path / "runs")
    assert main([*map(str, dirs), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "[/__w/pytorch/pytorch/aten/src/ATen/native/Conv" in out  # shown literally
    assert "[bold]x[/bold]" in out


def test_folders_without_a_record_are_skipped_with_one_warning(tmp_path: Path, capsys) -> None:
    dirs = _real_runs(tmp_path / "runs")
    strays = [tmp_path / "runs" / "stray_a", tmp_path / "runs" / "stray_b" / "sub"]
    for stray in strays:
        (stray / ".hydra").mkdir(parents=True)
    assert main([*map(str, dirs), str(strays[0]), str(strays[1]), "--out", str(tmp_path / "cmp")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "stray_a" in warnings[0] and "1 more" in warnings[0]
    assert "findings beyond noise" in captured.out or "metrics compared" in captured.out
    assert (tmp_path / "cmp" / "report.html").is_file()


def test_only_folders_without_records_is_still_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no record.json found") and err.count("\n") == 1
