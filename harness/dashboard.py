"""`harness-dashboard`: a saved wandb workspace for a harness project, the panels an architecture comparison needs.

Why a workspace of our own: wandb's auto-generated one lays out a panel per key on the `Step` axis. This one groups
runs by wandb group (= sweep + variant, so seeds average with a stddev band), puts learning curves on
`trainer/global_step`, draws each probe headline as a per-layer bar chart (the curve census beside its random-init
control), parameters against accuracy, parallel coordinates over what the sweep varied, the probe tables and images,
and can filter to one sweep. The spec is plain data (`dashboard_spec`); `wandb-workspaces` only turns it into a
Workspace (`build_workspace`), so `--dry-run` needs neither the package nor a network.

Usage:
    harness-dashboard --dry-run [--records multirun/<date>/<time>]          # print the spec as JSON; no network
    harness-dashboard --entity ME --project harness --records multirun/...  # save it (pip install 'harness[dashboard]')
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.facts import keys as K
from harness.facts.runs import RECORD_NAME, load_record
from harness.run.wandb_layout import (
    HEADLINES,
    PER_LAYER,
    PROBE_ROUND,
    TRAIN_LOSS,
    TRAIN_STEP,
    VAL_ACC,
    VAL_ACC_BEST,
    headline_keys,
    split_key,
    sweep_id,
    wandb_configured,
)

EXTRA = "pip install 'harness[dashboard]'"  # what installs wandb-workspaces
# Without records: the default model's probe layers (the tiny InceptionV1) and the default probe set.
LAYERS = ["conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b", "mixed4a", "mixed4b"]
DEFAULT_LAYERS = {K.CURVES: LAYERS[2:], "featvis": ["mixed4b"]}
DEFAULT_PROBES = (K.ACTIVATIONS, K.CURVES, K.DISSECT, K.LINEAR, K.CKA, "featvis")
TABLES = {K.ACTIVATIONS: "units", K.CURVES: "units", K.DISSECT: "units", "featvis": "units", "examples": "units",
          "spectra": "layers"}  # fmt: skip
IMAGES = {K.CURVES: ["tuning"], K.CKA: ["layer_cka"]}  # plus featvis/examples: one image per layer
SUMMARY_PARAMS = "model/params/total"


class DashboardError(Exception):
    """Bad input for harness-dashboard: printed as one `error:` line."""


def read_records(folder: Path) -> list[dict[str, Any]]:
    """Every record.json below `folder` (a sweep folder or a folder of runs); an error when it holds none."""
    records = []
    for path in sorted(folder.rglob(RECORD_NAME)):
        try:
            records.append(load_record(path))
        except (OSError, ValueError):
            continue
    if not records:
        raise DashboardError(f"no run records ({RECORD_NAME}) under {folder}; "
                             "pass a sweep folder (multirun/<date>/<time>)")
    return records


def headline_layers(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """probe -> the layers its headlines were measured on, in the order the records list them."""
    found: dict[str, dict[str, None]] = {}
    for record in records:
        for key in record.get("metrics") or {}:
            probe, _, rest = key.partition("/")
            metrics = HEADLINES.get(probe, ())
            layer, metric = split_key(rest)
            if metric in metrics:
                found.setdefault(probe, {})[layer] = None
    return {probe: list(layers) for probe, layers in found.items()}


def varied_config(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dotted config keys whose value differs between the records (what a sweep varied), seed and paths left out."""
    values: dict[str, set[str]] = {}
    for record in records:
        for key, value in _flatten(record.get("config") or {}).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    skip = ("seed", "paths.", "variant", "tags", "sweep")
    paths = {
        k
        for record in records
        for k, v in _flatten(record.get("config") or {}).items()
        if isinstance(v, str) and "/" in v
    }  # run folders differ per job (checkpoint dirpath, save_dir)
    return sorted(k for k, v in values.items() if len(v) > 1 and not k.startswith(skip) and k not in paths)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _sweep_of(records: Sequence[Mapping[str, Any]], folder: Path | None) -> str | None:
    """The sweep id the runs were logged under (their wandb group is `<sweep>/<variant>`)."""
    for record in records:
        group = (record.get("wandb") or {}).get("group") or ""
        if "/" in group:
            return group.rsplit("/", 1)[0]
    return sweep_id(folder) if folder is not None and (folder / "multirun.yaml").is_file() else None


def media_keys(records: Sequence[Mapping[str, Any]], layers: Mapping[str, Sequence[str]]) -> tuple[list, list]:
    """(table keys, image keys) as wandb holds them: from the records' probe files (`table/units` ->
    `<probe>/units`, `image/tuning` -> `<probe>/image/tuning`), else the default probe set's."""
    if not records:
        tables = [f"{p}/{t}" for p, t in TABLES.items()] + [f"{p}/{PER_LAYER}" for p in layers]
        images = [f"{p}/image/{n}" for p, names in IMAGES.items() for n in names]
        return tables, images + [f"{p}/image/{layer}" for p in ("featvis", "examples") for layer in ["mixed4b"]]
    tables: dict[str, None] = {}
    images: dict[str, None] = {}
    for record in records:
        for probe, entry in (record.get("probes") or {}).items():
            if (entry or {}).get("scalars"):
                tables[f"{probe}/{PER_LAYER}"] = None
            for name in (entry or {}).get("files") or {}:
                kind, _, rest = name.partition("/")
                if kind == "table":
                    tables[f"{probe}/{rest}"] = None
                elif kind == "image":
                    images[f"{probe}/image/{rest}"] = None
    return sorted(tables), sorted(images)


def _line(title: str, y: Sequence[str], x: str = TRAIN_STEP) -> dict[str, Any]:
    return {"type": "line", "title": title, "x": x, "y": list(y)}


def _bar(title: str, metrics: Sequence[str]) -> dict[str, Any]:
    return {"type": "bar", "title": title, "metrics": list(metrics)}


def headline_panels(layers: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """One per-layer bar chart per probe headline; the curve census shares its panel with the random-init control."""
    panels = []
    for probe, probe_layers in layers.items():
        metrics = HEADLINES.get(probe, ())
        if probe == K.CURVES:
            keys = headline_keys(probe, probe_layers)  # per layer: detectors, then detectors_random_init
            panels.append(_bar(f"{probe}: {' vs '.join(metrics)} per layer", keys) | {"headline": list(metrics)})
            continue
        for metric in metrics:
            keys = [K.key(probe, layer, metric) for layer in probe_layers]
            panels.append(_bar(f"{probe}: {metric} per layer", keys) | {"headline": [metric]})
    return panels


def dashboard_spec(
    entity: str | None,
    project: str,
    name: str,
    records: Sequence[Mapping[str, Any]] = (),
    folder: Path | None = None,
) -> dict[str, Any]:
    """The workspace as plain data: sections of panels; runs grouped by wandb group, filtered to the sweep if any."""
    layers = headline_layers(records) if records else {p: DEFAULT_LAYERS.get(p, LAYERS) for p in DEFAULT_PROBES}
    sweep = _sweep_of(records, folder)
    varied = varied_config(records)
    tables, images = media_keys(records, layers)
    sections = [
        ("Learning curves", [_line("val/acc", [VAL_ACC, VAL_ACC_BEST]), _line("train/loss and val/loss",
                                                                            [TRAIN_LOSS, K.VAL_LOSS])]),
        ("Accuracy and parameters", [
            _bar("val/acc_best by variant", [VAL_ACC_BEST]),
            _bar("test/acc by variant", [K.TEST_ACC]),
            {"type": "scatter", "title": "parameters vs val/acc_best", "x": SUMMARY_PARAMS, "y": VAL_ACC_BEST},
        ]),
        ("Probe headlines per layer", headline_panels(layers)),
        ("Probes over training", [
            {"type": "line", "title": f"{p} headlines by round", "x": PROBE_ROUND, "metric_regex": f"^{p}/.*"}
            for p in layers
        ]),
        ("Sweep", [{"type": "parallel", "title": "what the sweep varied", "columns": [*varied, VAL_ACC_BEST]}]),
        ("Tables and images", [{"type": "table", "title": t, "key": t} for t in tables]
         + ([{"type": "media", "title": "probe pictures", "keys": images}] if images else [])),
    ]  # fmt: skip
    return {
        "kind": "workspace",
        "entity": entity,
        "project": project,
        "name": name,
        "group_by": "Group",
        "aggregate": {"func": "mean", "range": "stddev"},
        "x_axis": TRAIN_STEP,
        "filter": f"Config('sweep') = '{sweep}'" if sweep else None,
        "sections": [{"name": title, "panels": panels} for title, panels in sections],
    }


def build_workspace(spec: Mapping[str, Any]) -> Any:
    """The wandb_workspaces Workspace for `spec`; DashboardError naming the extra when the package is missing."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as err:
        raise DashboardError(f"harness-dashboard needs wandb-workspaces to build a workspace: {EXTRA}") from err
    agg = {"groupby_aggfunc": spec["aggregate"]["func"], "groupby_rangefunc": spec["aggregate"]["range"]}

    def panel(p: Mapping[str, Any]) -> Any:
        kind = p["type"]
        if kind == "bar":
            return wr.BarPlot(title=p["title"], metrics=p["metrics"], orientation="v", **agg)
        if kind == "line" and "metric_regex" in p:
            return wr.LinePlot(title=p["title"], x=p["x"], metric_regex=p["metric_regex"], **agg)
        if kind == "line":
            return wr.LinePlot(title=p["title"], x=p["x"], y=p["y"], **agg)
        if kind == "scatter":
            return wr.ScatterPlot(title=p["title"], x=wr.SummaryMetric(p["x"]), y=wr.SummaryMetric(p["y"]))
        if kind == "parallel":
            columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(c)) for c in p["columns"][:-1]]
            columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(p["columns"][-1])))
            return wr.ParallelCoordinatesPlot(title=p["title"], columns=columns)
        if kind == "table":
            return wr.WeavePanelSummaryTable(table_name=p["key"])
        if kind == "media":
            return wr.MediaBrowser(title=p["title"], media_keys=p["keys"])
        raise ValueError(f"unknown panel type {kind!r}")

    runset = {"groupby": [ws.Metric(spec["group_by"])]}
    if spec.get("filter"):
        runset["filters"] = spec["filter"]
    return ws.Workspace(
        entity=spec["entity"] or "",  # a dry run may have none; saving online requires it
        project=spec["project"],
        name=spec["name"],
        sections=[
            ws.Section(name=s["name"], panels=[panel(p) for p in s["panels"]], is_open=True) for s in spec["sections"]
        ],  # fmt: skip
        settings=ws.WorkspaceSettings(x_axis=spec["x_axis"]),
        runset_settings=ws.RunsetSettings(**runset),
    )


def save_online(spec: Mapping[str, Any], timeout: float) -> str:
    """Save the workspace; returns its URL. A daemon thread, so an unreachable server cannot hang the command."""
    os.environ.setdefault("WANDB_SILENT", "true")
    workspace = build_workspace(spec)  # a missing package is an error before any thread starts
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["url"] = workspace.save().url
        except Exception as err:  # reported to the user as one line by main()
            result["error"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DashboardError(f"could not save the workspace: wandb did not answer within {timeout:.0f} s")
    if "error" in result:
        raise DashboardError(f"could not save the workspace: {result['error']}")
    return result["url"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness-dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--entity", help="wandb entity (user or team); required online")
    parser.add_argument("--project", default="harness", help="wandb project (default: harness)")
    parser.add_argument("--name", default="harness: variants x probes", help="workspace (view) name")
    parser.add_argument("--records", type=Path, help="a sweep folder: layers, swept keys and the sweep filter "
                                                     "come from its record.json files")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the spec as JSON; no network")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for wandb when saving")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.records is not None and not args.records.is_dir():
            raise DashboardError(f"--records {args.records} is not a directory")
        records = read_records(args.records) if args.records is not None else []
        spec = dashboard_spec(args.entity, args.project, args.name, records, args.records)
        dry = args.dry_run or not wandb_configured()
        if not args.dry_run and dry:
            print("no wandb API key configured (WANDB_API_KEY or `wandb login`): dry run, nothing created",
                  file=sys.stderr)  # fmt: skip
        if dry:
            panels = [f"{s['name']}: {p['title']}" for s in spec["sections"] for p in s["panels"]]
            print(json.dumps({"dry_run": True, "would_create": spec, "panels": panels}, indent=1))
            return 0
        if not args.entity:
            raise DashboardError("saving online needs --entity (your wandb user or team)")
        print(f"saved workspace: {save_online(spec, args.timeout)}")
        return 0
    except DashboardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
