"""What `harness-train` prints: one line per epoch when stdout is a file, a compact one-based rich bar on a
terminal, Lightning's routine chatter silenced unless `verbose=true`, the tested checkpoint named, and the
closing summary."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from harness.run.progress import CompactRichBar, EpochLines, progress_callbacks
from harness.run.quiet import NOISE_LOGS

SMALL = ["data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=16", "logger=none",
         "trainer.accelerator=cpu"]  # fmt: skip


def _train_to_file(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "stdout.txt"
    cmd = [sys.executable, "-m", "harness.train", *SMALL, *args, f"paths.log_dir={tmp_path}",
           f"hydra.run.dir={tmp_path}/run"]  # fmt: skip
    with out.open("w") as f:  # stdout is a file, as under nohup or SLURM
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True, timeout=300)
    text = out.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def test_file_output_has_one_line_per_epoch_no_noise_and_a_summary(tmp_path: Path) -> None:
    text = _train_to_file(tmp_path, "trainer.max_epochs=2", "probes=[activations]")
    epochs = [line.split(" - ", 1)[-1] for line in text.splitlines() if "harness.run.progress" in line]
    assert [e.split("  ")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"]
    for line in epochs:
        for part in ("train/loss ", "val/loss ", "val/acc ", " img/s", "ETA "):
            assert part in line, (part, line)
    assert "ETA 0:00:00" in epochs[-1]
    assert "probes (all) after epoch 2/2" in text  # the same numbering as the epoch lines
    assert "testing the best checkpoint, epoch " in text and "/2, val/acc " in text
    for noise in (*NOISE_LOGS, "LeafSpec", "smaller than the logging interval", "Epoch 0"):
        assert noise not in text, noise
    assert "harness-train: finished" in text and f"{tmp_path}/run" in text and "test/acc" in text
    assert "- dead units:" in text


def test_verbose_brings_lightning_messages_back(tmp_path: Path) -> None:
    text = _train_to_file(tmp_path, "debug=fdr", "verbose=true")
    assert "GPU available:" in text


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_the_compact_bar_and_files_get_lines() -> None:
    bars, enabled = progress_callbacks(True, stream=_Tty())
    assert enabled and isinstance(bars[0], CompactRichBar)
    lines, enabled = progress_callbacks(True, stream=io.StringIO())
    assert not enabled and isinstance(lines[0], EpochLines)
    assert progress_callbacks(False, stream=_Tty()) == ([], False)


def test_bar_is_one_based_and_short(monkeypatch) -> None:
    from pytorch_lightning.callbacks import RichProgressBar

    bar = CompactRichBar()

    class _Trainer:
        max_epochs = 8

    bar._trainer = _Trainer()  # what Lightning's setup sets
    assert bar._get_train_description(7).strip() == "Epoch 8/8"
    metrics = {"train/loss_step": 0.41234, "train/loss_epoch": 0.5, "val/loss": 0.3, "val/acc": 0.9, "v_num": 1}
    monkeypatch.setattr(RichProgressBar, "get_metrics", lambda self, trainer, module: metrics)
    assert bar.get_metrics(None, None) == {"loss": "0.412", "val/acc": "0.900"}
