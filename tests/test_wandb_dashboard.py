"""scripts/wandb_dashboard.py: the dry run prints the panel spec with no network; without an API key it
falls back to the dry run instead of prompting; the spec builds a wandb_workspaces Workspace offline."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from pathlib import Path

import pytest

from tests.test_compare import BASE, WIDE, write_record

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "wandb_dashboard.py"


@pytest.fixture(scope="module")
def dashboard():
    spec = importlib.util.spec_from_file_location("wandb_dashboard", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def _panels(out: str) -> list[str]:
    return json.loads(out)["panels"]


def test_dry_run_prints_panels_without_network(dashboard, no_network, capsys) -> None:
    imported_before = "wandb_workspaces" in sys.modules
    assert dashboard.main(["--dry-run", "--project", "p"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["dry_run"] is True and data["would_create"]["project"] == "p"
    assert data["would_create"]["group_by"] == "Group"
    panels = _panels(out)
    assert "Accuracy by variant: val/acc by variant" in panels
    assert "Curve detectors per layer: curves/mixed3b/detectors" in panels
    assert "CKA to reference per layer: cka/mixed4b/cka_to_reference" in panels
    assert any(p.startswith("Dissect") for p in panels) and any(p.startswith("Lineage") for p in panels)
    if not imported_before:
        assert "wandb_workspaces" not in sys.modules  # only the online path imports it


def test_layers_come_from_records(dashboard, no_network, tmp_path: Path, capsys) -> None:
    probes = {"lineage": {"scalars": {"mixed3b_5x5/added/dead": 0.0}, "error": None}}
    write_record(tmp_path, "0", variant=BASE, metrics={"curves/mixed9/detectors": 1.0})
    write_record(tmp_path, "1", variant=WIDE, metrics={"cka/convX/cka_to_reference": 0.5}, probes=probes)
    assert dashboard.main(["--dry-run", "--records", str(tmp_path)]) == 0
    panels = _panels(capsys.readouterr().out)
    assert "Curve detectors per layer: curves/mixed9/detectors" in panels
    assert "Curve detectors per layer: curves/mixed3b/detectors" not in panels
    assert "CKA to reference per layer: cka/convX/cka_to_reference" in panels
    assert "Lineage of added units: lineage: mixed3b_5x5 added units" in panels


def test_without_api_key_falls_back_to_dry_run(dashboard, no_network, no_key, capsys) -> None:
    assert dashboard.main(["--entity", "someone"]) == 0
    captured = capsys.readouterr()
    assert "no wandb API key configured" in captured.err and json.loads(captured.out)["dry_run"] is True


def test_online_needs_entity(dashboard, no_network, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert dashboard.main([]) == 2
    assert capsys.readouterr().err.startswith("error: saving online needs --entity")


def test_bad_records_dir_is_a_user_error(dashboard, tmp_path: Path, capsys) -> None:
    assert dashboard.main(["--dry-run", "--records", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: --records")


def test_spec_builds_a_workspace_offline(dashboard, no_network) -> None:
    pytest.importorskip("wandb_workspaces", reason="wandb-workspaces is not installed")
    spec = dashboard.dashboard_spec("someone", "harness", "view", {"lineage": ["mixed3b_5x5"]})
    workspace = dashboard.build_workspace(spec)
    assert [s.name for s in workspace.sections] == [s["name"] for s in spec["sections"]]
    assert sum(len(s.panels) for s in workspace.sections) == sum(len(s["panels"]) for s in spec["sections"])
    workspace._to_model()  # the payload wandb would receive: validates every panel, no network
