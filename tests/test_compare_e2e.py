"""End to end: a real multirun (2 variants x 2 seeds, plus one job that crashes) -> harness-compare.

The crashing job must not stop the others (Hydra runs every job, then exits non-zero), and the
comparison must list it as failed while comparing the finished runs.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from harness.compare.cli import main as compare_main

TINY = ["data.train_size=128", "data.val_size=32", "data.test_size=32", "data.batch_size=32", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "logger=csv", "probes=[curves,cka,dissect,lineage]",
        "probes.curves.orientations=36", "probing.probe_set_size=64"]


def test_multirun_to_comparison(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "harness.train", "-m", "+model.widen.mixed3b_5x5=0,4", "seed=0,1", *TINY,
           f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a crashed run (width -1 fails while its model is built), compared alongside the sweep
    bad = subprocess.run([sys.executable, "-m", "harness.train", "-m", "model.width=-1", *TINY,
                          f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={tmp_path}/bad"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    out = tmp_path / "compare"
    code = compare_main([str(sweep), str(tmp_path / "bad" / "0"), "--out", str(out)])
    assert code in (0, None)
    for name in ("summary.csv", "effects.csv", "headline.txt", "headline.json", "report.html"):
        assert (out / name).is_file(), name
    assert list((out / "plots").glob("*.png"))
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted(r["status"] for r in rows) == ["failed", "finished", "finished", "finished", "finished"]
    assert {r["label"] for r in rows if r["status"] == "finished"} == {"base", "model.widen.mixed3b_5x5=4"}
    effects = list(csv.DictReader((out / "effects.csv").open()))
    assert any(r["metric"].startswith("curves/") for r in effects)
    headline = json.loads((out / "headline.json").read_text())
    assert "model.widen.mixed3b_5x5=4" in json.dumps(headline)
    html = (out / "report.html").read_text()
    assert "failed" in html and "model.width" in html  # the crashed run and its error are shown
