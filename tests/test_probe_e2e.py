"""Probes inside a training run and on a checkpoint: keys reach wandb (read back) and the run record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.probes import Probe, ProbeContext, ProbeResult
from harness.run.records import RunRecord
from harness.run.wandb_offline import key_census, read_offline_run, read_table
from harness.train import train


class Broken(Probe):
    """A probe that always raises: the run and the other probes must carry on."""

    name = "broken"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        raise RuntimeError("planted probe failure")


def test_training_run_logs_probe_results(make_cfg) -> None:
    cfg = make_cfg(
        "probes=[activations,examples]",
        "+probes.broken._target_=tests.test_probe_e2e.Broken",
        "trainer.max_epochs=2",
        "probing.every_n_epochs=1",
        "probing.probe_set_size=64",
    )
    metrics, _ = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    record = RunRecord.load(run_dir)
    assert record["status"] == "finished" and "test/acc" in record["test"]

    entry = record["probes"]["activations"]
    assert entry["error"] is None and 0.0 <= entry["scalars"]["mixed3b/dead_fraction"] <= 1.0
    assert record["metrics"]["activations/conv2d0/dead_fraction"] == entry["scalars"]["conv2d0/dead_fraction"]
    assert record["probes"]["broken"]["error"] == "RuntimeError: planted probe failure"
    assert record["metrics"]["broken/failed"] == 1.0
    assert [h["epoch"] for h in record["probe_history"]] == [0]  # cheap probes mid-run, all at the end

    run = read_offline_run(run_dir)
    keys = run.keys()
    # headlines stay charts; every other scalar is a column of the probe's per_layer table
    assert {"activations/mixed3b/dead_fraction", "broken/failed"} <= keys
    assert "activations/conv2d2/sparsity" not in keys and run.summary["activations/per_layer/_type"] == "table-file"
    assert run.summary["activations/mixed4b/dead_fraction"] == entry["scalars"]["mixed4b/dead_fraction"]
    # per-unit rows as a wandb.Table, pictures as captioned wandb.Images, timings under perf/
    assert run.summary["activations/units/_type"] == "table-file"
    assert int(run.summary["activations/units/nrows"]) == sum(record["model"]["channels"][layer] for layer in
                                                             ("conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b",
                                                              "mixed4a", "mixed4b"))
    assert run.summary["examples/image/mixed4b/_type"] == "image-file" and run.summary["examples/image/mixed4b/caption"]
    assert "examples/seconds" not in keys and "perf/probes/examples_seconds" in run.summary
    assert (run_dir / record["probes"]["examples"]["files"]["image/mixed4b"]).is_file()
    # two rounds (cheap after epoch 0, all at the end), each one row on the monotonic probe/round axis
    rounds = [row for row in run.history if "probe/round" in row]
    assert [r["probe/round"] for r in rounds] == [0, 1] and [r["probe/epoch"] for r in rounds] == [1, 2]
    assert all(run.metrics[f"{p}/*"]["step_metric"] == "probe/round" for p in ("activations", "examples", "broken"))


def test_harness_probe_on_a_checkpoint(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("probes=none", "trainer.max_epochs=1", "seed=2")
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "probe_run"
    cmd = [sys.executable, "-m", "harness.probe", f"ckpt={ckpt}", "probes=[activations]",
           "probing.probe_set_size=64", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = RunRecord.load(out)
    assert record["status"] == "finished" and record["job_type"] == "probe"
    assert record["source"]["ckpt"] == str(ckpt)
    assert "activations/mixed3a/dead_fraction" in record["metrics"]
    assert record["probes"]["activations"]["files"]["table/units"].endswith(".csv")
    # the round is a wandb run of its own (job_type probe), in the probed run's group and named like it
    trained, probed = read_offline_run(cfg.paths.output_dir), read_offline_run(out)
    assert (probed.job_type, probed.group, probed.name) == ("probe", trained.group, "base-s2")
    assert probed.config["variant"] == "base" and probed.config["source"]["ckpt"] == str(ckpt)
    assert [row["probe/round"] for row in probed.history if "probe/round" in row] == [0]
    assert "activations/mixed3a/dead_fraction" in probed.keys() and probed.summary["model/params/total"] > 0
    assert record["wandb"]["group"] == trained.group


def test_default_probe_set_runs_without_failures(make_cfg) -> None:
    # No time budget: this checks that every default probe runs; on a loaded machine the 60 s budget would skip
    # the last ones (the budget has its own tests).
    cfg = make_cfg("probes=default", "trainer.max_epochs=1", "probing.probe_set_size=64",
                   "probing.budget_s=null")  # fmt: skip
    train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    _default_run_reaches_wandb_as_a_dashboard(Path(cfg.paths.output_dir), record)
    probes = record["probes"]
    assert set(probes) == {"activations", "curves", "dissect", "linear", "cka", "spectra", "lineage", "examples",
                           "featvis"}
    assert {name: e["error"] for name, e in probes.items() if e["error"]} == {}
    metrics = record["metrics"]
    assert "curves/mixed3b/detectors" in metrics and "curves/mixed3b/detectors_random_init" in metrics
    assert "dissect/mixed3b/unique_concepts" in metrics and "cka/mixed3b/cka_to_reference" in metrics
    assert (Path(cfg.paths.output_dir) / probes["curves"]["files"]["image/tuning"]).is_file()


def _default_run_reaches_wandb_as_a_dashboard(run_dir: Path, record: dict) -> None:
    """The default run's wandb history: a few dozen charts (it had ~270), tables with image cells, histograms."""
    run = read_offline_run(run_dir)
    census = key_census(run)
    assert len(census.scalars) <= 80, sorted(census.scalars)
    assert {"train/loss", "val/acc", "val/acc_best", "curves/mixed3b/detectors", "curves/mixed3b/detectors_random_init",
            "cka/mixed3b/cka_to_reference", "dissect/mixed3b/unique_concepts"} <= census.scalars  # fmt: skip
    # nothing lost: every probe scalar of the record is a cell of its probe's per_layer table
    table = read_table(run, "dissect/per_layer")
    cells = {(row[0], column) for row in table["data"] for column in table["columns"][1:]}
    assert {tuple(k.split("/", 1)) for k in record["probes"]["dissect"]["scalars"]} <= cells
    # a unit's picture is an image cell of its table row (featvis: its visualisation; examples: its top images)
    for probe in ("featvis", "examples"):
        units = read_table(run, f"{probe}/units")
        assert units["columns"][-1] == "image"
        assert all(row[-1]["_type"] == "image-file" for row in units["data"]), probe
    assert census.count("histogram") >= 1 and "curves/hist/mixed3b/selectivity" in census.media
    assert census.count("image-file") >= 3 and run.summary["curves/image/tuning/caption"]
