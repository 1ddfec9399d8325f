"""Create a saved wandb workspace for a harness project: accuracy by variant and the per-layer probe panels.

Why a script: a wandb project starts with an auto-generated workspace of hundreds of unsorted panels; this
one groups runs by wandb group (= the harness variant, so seeds average together with a stddev band) and
lays out the panels an architecture comparison needs: val/acc, curve detectors, dissect concepts and CKA
per layer, and what widen-added units became (lineage).

Usage:
    python scripts/wandb_dashboard.py --dry-run [--records multirun/<date>/<time>]   # print the spec, no network
    python scripts/wandb_dashboard.py --entity ME --project harness [--records DIR]  # save the workspace online

`--records` reads the layer names from local record.json files; without it the default InceptionV1 layers
are used. With no wandb API key configured the script prints the spec instead (it never prompts), and the
online save gives up after `--timeout` seconds instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import netrc
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

LAYERS = ["conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b", "mixed4a", "mixed4b"]
CURVE_LAYERS = ["conv2d2", "mixed3a", "mixed3b", "mixed4a"]
LINEAGE_CATEGORIES = ["curve_detector", "other_detector", "duplicate", "dead", "other"]
# metric family -> regex over metric keys capturing the layer (or branch) name
FAMILIES = {
    "curves": r"^curves/([^/]+)/detectors$",
    "dissect": r"^dissect/([^/]+)/unique_concepts$",
    "cka": r"^cka/([^/]+)/cka_to_reference$",
    "lineage": r"^lineage/([^/]+)/added/[^/]+$",
}


def discover_layers(records_dir: Path) -> dict[str, list[str]]:
    """Layer (branch) names per metric family from the record.json files below `records_dir` (no network)."""
    found: dict[str, dict[str, None]] = {family: {} for family in FAMILIES}
    for path in sorted(records_dir.rglob("record.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        keys = list(record.get("metrics") or {})
        for probe, entry in (record.get("probes") or {}).items():
            keys += [f"{probe}/{k}" for k in ((entry or {}).get("scalars") or {})]
        for family, pattern in FAMILIES.items():
            for key in keys:
                if match := re.match(pattern, key):
                    found[family][match[1]] = None
    return {family: list(names) for family, names in found.items()}


def _line(title: str, y: Sequence[str]) -> dict[str, Any]:
    return {"type": "line", "title": title, "y": list(y)}


def _bar(title: str, metrics: Sequence[str]) -> dict[str, Any]:
    return {"type": "bar", "title": title, "metrics": list(metrics)}


def _per_layer(template: str, layers: Sequence[str]) -> list[dict[str, Any]]:
    return [_line(template.format(x), [template.format(x)]) for x in layers]


def dashboard_spec(entity: str | None, project: str, name: str, layers: Mapping[str, Sequence[str]]) -> dict:
    """The workspace as plain data: sections of panels, runs grouped by wandb group (the variant)."""
    curves = layers.get("curves") or CURVE_LAYERS
    dissect = layers.get("dissect") or LAYERS
    cka = layers.get("cka") or LAYERS
    branches = layers.get("lineage") or []
    lineage = [
        _bar(f"lineage: {b} added units", [f"lineage/{b}/added/{c}" for c in LINEAGE_CATEGORIES]) for b in branches
    ]
    if not branches:
        lineage = [
            {"type": "line", "title": "lineage: added units (all branches)", "metric_regex": "lineage/.*/added/.*"}
        ]
    sections = [
        ("Accuracy by variant", [
            _line("val/acc by variant", ["val/acc"]),
            _line("val/loss by variant", ["val/loss"]),
            _line("train/loss by variant", ["train/loss"]),
            _bar("test/acc by variant", ["test/acc"]),
        ]),
        ("Curve detectors per layer", _per_layer("curves/{}/detectors", curves)),
        ("Dissect: unique concepts per layer", _per_layer("dissect/{}/unique_concepts", dissect)),
        ("CKA to reference per layer", _per_layer("cka/{}/cka_to_reference", cka)),
        ("Lineage of added units", lineage),
    ]  # fmt: skip
    return {
        "kind": "workspace",
        "entity": entity,
        "project": project,
        "name": name,
        "group_by": "Group",
        "aggregate": {"func": "mean", "range": "stddev"},
        "sections": [{"name": title, "panels": panels} for title, panels in sections],
    }


def api_key_configured(env: Mapping[str, str] | None = None) -> bool:
    """WANDB_API_KEY or a netrc entry for the wandb host (as harness.wandb_logger.wandb_configured, without
    importing Lightning just to answer this)."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(env.get("NETRC", str(Path.home() / ".netrc"))).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def build_workspace(spec: Mapping[str, Any]) -> Any:
    """The wandb_workspaces Workspace for `spec` (imported here: only the online path needs the package)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    agg = spec["aggregate"]

    def panel(p: Mapping[str, Any]) -> Any:
        if p["type"] == "bar":
            return wr.BarPlot(title=p["title"], metrics=p["metrics"], orientation="v",
                              groupby_aggfunc=agg["func"], groupby_rangefunc=agg["range"])  # fmt: skip
        if "metric_regex" in p:
            return wr.LinePlot(title=p["title"], metric_regex=p["metric_regex"])
        return wr.LinePlot(title=p["title"], y=p["y"], groupby_aggfunc=agg["func"], groupby_rangefunc=agg["range"])

    return ws.Workspace(
        entity=spec["entity"],
        project=spec["project"],
        name=spec["name"],
        sections=[
            ws.Section(name=s["name"], panels=[panel(p) for p in s["panels"]], is_open=True) for s in spec["sections"]
        ],  # fmt: skip
        runset_settings=ws.RunsetSettings(groupby=[ws.Metric(spec["group_by"])]),
    )


def save_online(spec: Mapping[str, Any], timeout: float) -> str:
    """Save the workspace; returns its URL. Runs in a daemon thread so an unreachable server cannot hang us."""
    os.environ.setdefault("WANDB_SILENT", "true")
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["url"] = build_workspace(spec).save().url
        except Exception as err:  # reported to the user as one line by main()
            result["error"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"wandb did not answer within {timeout:.0f} s")
    if "error" in result:
        raise RuntimeError(result["error"])
    return result["url"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entity", help="wandb entity (user or team); required online")
    parser.add_argument("--project", default="harness", help="wandb project (default: harness)")
    parser.add_argument("--name", default="harness: variants x probes", help="workspace (view) name")
    parser.add_argument("--records", type=Path, help="read layer names from record.json files below this folder")
    parser.add_argument("--dry-run", action="store_true", help="print the spec as JSON; no network")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for wandb when saving")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.records is not None and not args.records.is_dir():
        print(f"error: --records {args.records} is not a directory", file=sys.stderr)
        return 2
    layers = discover_layers(args.records) if args.records else {}
    spec = dashboard_spec(args.entity, args.project, args.name, layers)
    dry = args.dry_run or not api_key_configured()
    if not args.dry_run and dry:
        print("no wandb API key configured (WANDB_API_KEY or `wandb login`): dry run, nothing created", file=sys.stderr)
    if dry:
        panels = [f"{s['name']}: {p['title']}" for s in spec["sections"] for p in s["panels"]]
        print(json.dumps({"dry_run": True, "would_create": spec, "panels": panels}, indent=1))
        return 0
    if not args.entity:
        print("error: saving online needs --entity (your wandb user or team)", file=sys.stderr)
        return 2
    try:
        url = save_online(spec, args.timeout)
    except (TimeoutError, RuntimeError) as err:
        print(f"error: could not save the workspace: {err}", file=sys.stderr)
        return 1
    print(f"saved workspace: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
