"""Compare finished runs from their `record.json` files: effects beyond seed noise, plots, one HTML page.

Why a separate package: an architecture experiment's answer is a comparison across variants and seeds,
and it must be readable offline, from the run directories alone (no wandb server). The command is
`harness-compare` (see `harness.compare.cli`); `compare(...)` is the same pipeline as a function.
"""

from harness.compare.pipeline import Comparison, compare

__all__ = ["Comparison", "compare"]
