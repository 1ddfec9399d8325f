"""The closing summary: run dir, variant, seed, accuracies, parameters, wall time, probe findings (planted values
come back; absent probes add no line) and the wandb sync command only for offline runs."""

from __future__ import annotations

import io

from rich.console import Console

from harness.run.summary import findings, print_summary, summary_findings, summary_rows

RECORD = {
    "status": "finished",
    "variant": "model.widen.mixed3b_5x5=16",
    "seed": 3,
    "config": {"trainer": {"max_epochs": 8}},
    "epochs": [{"epoch": e, "val/acc": a} for e, a in enumerate([0.5, 0.9, 0.996, 0.99])],
    "metrics": {"val/acc": 0.99},
    "test": {"test/acc": 0.987},
    "model": {"params/total": 97512},
    "wall_seconds": 125.4,
    "wandb": {"mode": "offline", "dir": "/runs/x/wandb/offline-run-20261201_1-abc"},
    "probes": {
        "curves": {"scalars": {"mixed3a/detectors": 2, "mixed3a/detectors_random_init": 1, "mixed3b/detectors": 9,
                               "mixed3b/detectors_random_init": 0, "mixed3b_5x5/detectors": 7}, "error": None},
        "activations": {"scalars": {"conv2d0/dead_fraction": 0.0, "mixed4a/dead_fraction": 0.25}, "error": None},
        "linear": {"scalars": {"conv2d0/class_acc": 0.4, "mixed4a/class_acc": 0.97}, "error": None},
        "featvis": {"scalars": {}, "error": "RuntimeError: boom [x]"},
        "dissect": {"scalars": {}, "error": None, "skipped": "time budget of 60 s spent (86 s)"},
    },
}  # fmt: skip


def test_rows_hold_the_facts_a_researcher_asks_for_first() -> None:
    rows = dict(summary_rows(RECORD, "/runs/x"))
    assert rows["run dir"] == "/runs/x" and rows["variant"] == "model.widen.mixed3b_5x5=16" and rows["seed"] == "3"
    assert rows["test/acc"] == "0.987"
    assert rows["val/acc"] == "0.996 (best, epoch 3/8)"  # one-based, like the progress lines
    assert rows["parameters"] == "97,512" and rows["wall time"] == "2 min 05 s"
    assert rows["wandb"] == "wandb sync /runs/x/wandb/offline-run-20261201_1-abc"


def test_no_sync_command_for_online_or_absent_wandb() -> None:
    assert "wandb" not in dict(summary_rows({**RECORD, "wandb": {"mode": "online", "dir": "/d"}}, "/r"))
    assert "wandb" not in dict(summary_rows({**RECORD, "wandb": None}, "/r"))


def test_findings_report_planted_values_and_failures_first() -> None:
    lines = summary_findings(RECORD)
    assert 3 <= len(lines) <= 5
    assert lines[0].startswith("probe failed: featvis")
    assert lines[1] == "probes skipped: dissect (time budget of 60 s spent (86 s))"
    curves = next(line for line in lines if line.startswith("curve detectors"))
    assert "mixed3a 2 (1)" in curves and "mixed3b 9 (0)" in curves and "most above control: mixed3b" in curves
    assert "mixed3b_5x5" not in curves  # branches are not layers
    assert any("25% in mixed4a" in line for line in lines)
    assert any("0.40 at conv2d0 -> best 0.97 at mixed4a" in line for line in lines)


def test_no_probes_no_findings() -> None:
    assert findings({"val/acc": 0.5}) == []
    assert summary_findings({**RECORD, "probes": {}, "metrics": {}}) == []


def test_printed_panel_fits_80_columns_and_escapes_markup() -> None:
    out = io.StringIO()
    print_summary(RECORD, "/runs/x", console=Console(file=out, width=80, force_terminal=True, color_system=None))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "harness-train: finished" in text and "RuntimeError" not in text and "test/acc" in text
    assert "wandb sync" in text and "0.987" in text


def test_log_files_get_unfolded_paths() -> None:
    out = io.StringIO()
    long_dir = "/scratch/user/harness/multirun/2026-12-01/11-28-30/17/a/much/longer/path/than/eighty/columns"
    print_summary(RECORD, long_dir, console=Console(file=out, width=80, force_terminal=False))
    assert long_dir in out.getvalue()


def test_no_layer_above_the_control_is_said_so() -> None:
    """Every layer at 0 detectors (0 at random init): no layer is named "most above control" (an argmax of ties)."""
    metrics = {"curves/conv2d2/detectors": 0.0, "curves/conv2d2/detectors_random_init": 0.0,
               "curves/mixed3a/detectors": 1.0, "curves/mixed3a/detectors_random_init": 1.0}  # fmt: skip
    line = next(line for line in findings(metrics) if line.startswith("curve detectors"))
    assert "none above the control in any layer" in line and "most above control" not in line


def test_precision_row_says_what_ran() -> None:
    record = {**RECORD, "config": {"trainer": {"max_epochs": 8, "precision": "bf16-mixed"}}}
    assert dict(summary_rows(record, "/r"))["precision"] == "bf16-mixed"
    assert "precision" not in dict(summary_rows(RECORD, "/r"))  # an older record without it: no row
