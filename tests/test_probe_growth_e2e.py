"""The growth-criteria probes (gradmax, effective_rank, sensli) inside harness-train and harness-probe write
one key per widen target / insert position, listed by harness.models.consumers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.models.consumers import insert_positions, widen_candidates
from harness.models.inception_v1 import InceptionV1
from harness.run.records import RunRecord
from harness.train import train


def test_growth_probes_in_training_and_on_a_checkpoint(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("probes=[gradmax,effective_rank,sensli]", "probing.probe_set_size=64", "logger=none",
                   "probing.budget_s=600", "probing.probe_timeout_s=600")  # fmt: skip
    train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    assert {name: entry["error"] for name, entry in record["probes"].items()} == dict.fromkeys(
        ["gradmax", "effective_rank", "sensli"]
    )
    net = InceptionV1(num_classes=2, width=0.25, last_layer=cfg.model.last_layer)  # the names depend on these only
    targets, positions = widen_candidates(net), insert_positions(net)
    assert len(targets) == 3 + 6 * len(positions) and positions[-1] == "mixed4b"
    metrics = record["metrics"]
    for t in targets:
        assert metrics[f"gradmax/{t}/score"] >= 0 and f"gradmax/{t}/score_per_param" in metrics
        assert 0 < metrics[f"effective_rank/{t}/fraction"] <= 1
        assert 0 < metrics[f"effective_rank/{t}/fraction_init"] <= 1 and f"effective_rank/{t}/ratio_to_init" in metrics
    assert all(metrics[f"sensli/{p}/score"] > 0 for p in positions)

    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "probe_run"
    cmd = [sys.executable, "-m", "harness.probe", f"ckpt={ckpt}", "probes=[sensli,gradmax]", "probes.gradmax.k=2",
           "probing.probe_set_size=32", f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probed = RunRecord.load(out)["metrics"]
    assert {f"sensli/{p}/score" for p in positions} | {f"gradmax/{t}/score" for t in targets} <= set(probed)
