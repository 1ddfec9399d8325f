"""harness-suggest's first line is the command to run: for a run that already has edits, the composed override
set (the run's edits plus the suggestion), not the increment."""

from __future__ import annotations

from harness.suggest.cli import main
from tests.test_suggest import NEUTRAL, plant


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
