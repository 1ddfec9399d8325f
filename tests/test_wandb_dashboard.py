"""harness-dashboard: the dry run prints the panel spec with no network (and without wandb-workspaces); the spec
has a per-layer panel per probe headline and builds a wandb_workspaces Workspace offline; bad input is one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import dashboard
from harness.run.wandb_layout import HEADLINES
from tests.helpers import BASE, WIDE, write_record


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A 2-variant x 2-seed sweep folder: headlines on two layers, the growth probe on the widened run only."""
    metrics = {"curves/mixed3b/detectors": 3.0, "curves/mixed3b/detectors_random_init": 1.0,
               "curves/mixed4a/detectors": 2.0, "curves/mixed4a/detectors_random_init": 0.0,
               "cka/mixed3b/cka_to_reference": 0.5, "dissect/mixed3b/unique_concepts": 2.0,
               "dissect/mixed3b/concept/curve": 1.0}  # fmt: skip
    probes = {"curves": {"scalars": {"mixed3b/detectors": 3.0}, "files": {"table/units": "probes/c.csv",
                                                                          "image/tuning": "probes/t.png"}}}  # fmt: skip
    for job, (variant, seed) in enumerate([(BASE, 0), (BASE, 1), (WIDE, 0), (WIDE, 1)]):
        extra = {"lineage/mixed3b_5x5/added/dead": 1.0} if variant == WIDE else {}
        write_record(tmp_path, str(job), variant=variant, seed=seed, metrics={**metrics, **extra}, probes=probes,
                     wandb={"group": f"2026-12-06_04-30-00/{variant}"})  # fmt: skip
    return tmp_path


def _dry(capsys, *args: str) -> dict:
    assert dashboard.main(["--dry-run", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_prints_panels_without_network(no_network, capsys) -> None:
    imported_before = "wandb_workspaces" in sys.modules
    data = _dry(capsys, "--project", "p")
    spec = data["would_create"]
    assert data["dry_run"] is True and spec["project"] == "p" and spec["group_by"] == "Group"
    assert spec["x_axis"] == "trainer/global_step" and spec["filter"] is None  # no records: no sweep to filter to
    panels = data["panels"]
    assert "Probe headlines per layer: curves: detectors vs detectors_random_init per layer" in panels
    assert "Accuracy and parameters: parameters vs val/acc_best" in panels
    assert "Learning curves: train/loss and val/loss" in panels
    if not imported_before:
        assert "wandb_workspaces" not in sys.modules  # only building the Workspace imports it


def test_a_sweep_folder_gives_a_panel_per_probe_headline(sweep: Path, no_network, capsys) -> None:
    spec = _dry(capsys, "--records", str(sweep))["would_create"]
    sections = {s["name"]: s["panels"] for s in spec["sections"]}
    headline = {p["title"]: p for p in sections["Probe headlines per layer"]}
    # one per (probe, headline metric) seen in the records; the curve census beside its random-init control
    wanted = {(probe, m) for probe in ("cka", "dissect") for m in HEADLINES[probe]}
    wanted |= {("lineage", m) for m in HEADLINES["lineage"]}
    assert {f"{p}: {m} per layer" for p, m in wanted} | {"curves: detectors vs detectors_random_init per layer"} == set(
        headline
    )
    curves = headline["curves: detectors vs detectors_random_init per layer"]
    assert curves["type"] == "bar" and curves["metrics"] == [
        "curves/mixed3b/detectors", "curves/mixed3b/detectors_random_init",
        "curves/mixed4a/detectors", "curves/mixed4a/detectors_random_init"]  # fmt: skip
    assert headline["lineage: added/dead per layer"]["metrics"] == ["lineage/mixed3b_5x5/added/dead"]
    assert spec["filter"] == "Config('sweep') = '2026-12-06_04-30-00'"  # one sweep only
    assert all(p["x"] == "trainer/global_step" for p in sections["Learning curves"])
    assert all(p["x"] == "probe/round" for p in sections["Probes over training"])
    media = sections["Tables and images"]
    assert {"type": "table", "title": "curves/units", "key": "curves/units"} in media
    assert {"type": "media", "title": "probe pictures", "keys": ["curves/image/tuning"]} in media


def test_spec_builds_a_workspace_offline(sweep: Path, no_network) -> None:
    pytest.importorskip("wandb_workspaces", reason="no wandb-workspaces: pip install 'harness[dashboard]'")
    spec = dashboard.dashboard_spec("someone", "harness", "view", dashboard.read_records(sweep), sweep)
    workspace = dashboard.build_workspace(spec)
    assert [s.name for s in workspace.sections] == [s["name"] for s in spec["sections"]]
    assert sum(len(s.panels) for s in workspace.sections) == sum(len(s["panels"]) for s in spec["sections"])
    workspace._to_model()  # the payload wandb would receive: validates every panel, no network


def test_without_api_key_falls_back_to_dry_run(no_network, no_key, capsys) -> None:
    assert dashboard.main(["--entity", "someone"]) == 0
    captured = capsys.readouterr()
    assert "no wandb API key configured" in captured.err and json.loads(captured.out)["dry_run"] is True


def test_bad_input_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert dashboard.main(["--dry-run", "--records", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: --records")
    (tmp_path / "empty_sweep").mkdir()
    assert dashboard.main(["--dry-run", "--records", str(tmp_path / "empty_sweep")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run records (record.json) under") and err.count("\n") == 1
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert dashboard.main([]) == 2
    assert capsys.readouterr().err.startswith("error: saving online needs --entity")
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # not installed: the extra is named
    assert dashboard.main(["--entity", "someone"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: harness-dashboard needs wandb-workspaces")
    assert err.rstrip().endswith("pip install 'harness[dashboard]'")


def test_the_old_script_still_runs(no_key) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "wandb_dashboard.py"
    out = subprocess.run([sys.executable, str(script), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["dry_run"] is True, out.stderr[-2000:]
