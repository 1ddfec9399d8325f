"""harness-compare survives what real run folders contain: error texts with rich markup brackets, and folders
(from `outputs/*/*`) that hold no record.json."""

from __future__ import annotations

from pathlib import Path

from harness.compare.cli import main
from tests.helpers import write_record

BRACKETED = "RuntimeError: failed at [/__w/pytorch/pytorch/aten/src/ATen/native/Conv.cpp:12] [bold]x[/bold]"


def _runs(root: Path) -> list[Path]:
    dirs = []
    for seed in range(2):
        dirs.append(write_record(root, f"base{seed}", seed=seed, metrics={"val/acc": 0.5 + 0.01 * seed}))
        dirs.append(write_record(root, f"wide{seed}", variant="model.widen.mixed3b_5x5=8", seed=seed,
                                 metrics={"val/acc": 0.6 + 0.01 * seed}, widen={"mixed3b_5x5": 8}))  # fmt: skip
    dirs.append(write_record(root, "crashed", variant="model.widen.mixed3b_5x5=8", seed=5, status="failed",
                             error=BRACKETED, widen={"mixed3b_5x5": 8}))  # fmt: skip
    return dirs


def test_bracketed_error_text_is_printed_not_parsed(tmp_path: Path, capsys) -> None:
    dirs = _runs(tmp_path / "runs")
    assert main([*map(str, dirs), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "[/__w/pytorch/pytorch/aten/src/ATen/native/Conv" in out  # shown literally
    assert "[bold]x[/bold]" in out


def test_folders_without_a_record_are_skipped_with_one_warning(tmp_path: Path, capsys) -> None:
    dirs = _runs(tmp_path / "runs")
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
