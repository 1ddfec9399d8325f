"""The default precision follows the hardware: bf16-mixed only where bf16 is native (harness/run/precision.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.run import precision


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend the CPU has the given features: `cpu(avx512_bf16=True)`; no GPU."""

    def _set(avx512_bf16: bool = False, amx: bool = False) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        precision.cpu_has_native_bf16.cache_clear()

    yield _set
    precision.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [
        (True, False, "bf16-mixed"),  # AMD Zen 4 / Intel Cooper Lake
        (False, True, "bf16-mixed"),  # Intel Sapphire Rapids (AMX)
        (False, False, "32-true"),  # AVX2-only or AVX-512 without BF16: bf16 would be emulated (0.15x measured)
    ],
)
def test_cpu_default_follows_native_bf16(cpu, avx512_bf16: bool, amx: bool, expected: str) -> None:
    cpu(avx512_bf16=avx512_bf16, amx=amx)
    assert precision.auto_precision("cpu") == expected
    assert precision.auto_precision("auto") == expected  # no GPU visible: the CPU decides


def test_gpu_request_without_cuda_keeps_fp32(cpu) -> None:
    cpu(avx512_bf16=True)
    assert precision.auto_precision("gpu") == "32-true" and precision.auto_precision("mps") == "32-true"


def test_cpuinfo_flags_are_read(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert "avx512_bf16" in precision._cpuinfo_flags(str(info))
    assert precision._cpuinfo_flags(str(tmp_path / "missing")) == set()


def test_config_resolves_to_a_concrete_precision(make_cfg, cpu) -> None:
    cpu(avx512_bf16=False)
    assert make_cfg().trainer.precision == "32-true"
    cpu(avx512_bf16=True)
    assert make_cfg().trainer.precision == "bf16-mixed"
    assert make_cfg("trainer.precision=32-true").trainer.precision == "32-true"  # explicit wins
