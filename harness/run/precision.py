"""The default training precision, chosen by what the hardware computes natively.

Why not one fixed default: bf16 autocast pays off only where the hardware has bf16 arithmetic. On a CPU with
AVX512-BF16 (AMD Zen 4, Intel Cooper Lake) or AMX-BF16 (Intel Sapphire Rapids and later), oneDNN runs bf16
convolutions natively and the default experiment trains faster at the same accuracy (measured numbers:
benchmarks/README.md, "Precision on a CPU with native bf16"). On AVX2-only CPUs (and AVX-512 without the BF16
extension) bf16 is emulated and was ~6x *slower* than fp32 (0.15x, benchmarks/README.md), so those keep fp32.
torch's own `torch.ops.mkldnn._is_mkldnn_bf16_supported()` is not the test: it is true on any AVX-512 CPU,
emulated or not.

`conf/trainer/default.yaml` sets ``precision: ${auto_precision:${trainer.accelerator}}``; the run record
stores the resolved value, so a record says what ran. Any explicit ``trainer.precision=...`` wins.
"""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import OmegaConf

RESOLVER = "auto_precision"
BF16, FP32 = "bf16-mixed", "32-true"


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware: AVX512-BF16 or AMX-BF16 (not emulated through fp32)."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None for probe in probes):
        return any(probe() for probe in probes if probe is not None)
    return bool(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16"})  # older torch: read the flags ourselves


def auto_precision(accelerator: str = "auto") -> str:
    """`bf16-mixed` where the training device has native bf16, else `32-true`.

    `accelerator` is `trainer.accelerator`: `cpu` looks at the CPU; `gpu`/`cuda` at the GPU; `auto` at the GPU
    when one is visible (what Lightning would pick), else the CPU.
    """
    import torch

    accelerator = str(accelerator or "auto").lower()
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu:
        return BF16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else FP32
    if accelerator in ("cpu", "auto"):
        return BF16 if cpu_has_native_bf16() else FP32
    return FP32  # mps, tpu, ...: Lightning's safe default


def register() -> None:
    """Make `${auto_precision:...}` available to every config (called when `harness` is imported)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, auto_precision)
