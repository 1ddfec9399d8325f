"""First-order signals from the base network, per candidate at its own number of units: ``tiny`` and
``gradmax_per_unit``.

Both ask what tier 0 measures (:mod:`harness.oracle.tier0`), to first order and without adding anything: how fast
could the training loss fall if the candidate's k units were added here?

* ``tiny``: TINY's projected first-order improvement per added unit (Verbockhaven et al. 2024), sum_{i<=k}
  lambda_i^2 / k, the lambdas of :func:`harness.growth.tiny_init.tiny_spectra` (the part of the desired update that
  the existing weights cannot express, fit by k new units; lambda_i^2 is direction i's first-order loss decrease
  at unit amplitude).
* ``gradmax_per_unit``: GradMax (Evci et al. 2022) per added unit, sum_{i<=k} sigma_i(B) / k, B = E[g_next h_in^T]
  (:func:`harness.growth.gradmax_init.b_matrices`): the largest fan-in gradient the k new units can start with.

Why per unit, and why k = the candidate's: candidates cost the same parameters, not the same units (the budget buys
4 stem units or 40 bottleneck units), so the ``gradmax`` probe's fixed k = 4 compares unlike edits; a direction
beyond B's rank adds nothing and dilutes the mean, as an extra unit there would.

Computed on tier 0's set A (the training images its line search uses), every target in the same passes. These
signals share their mathematics with tier 0 (TINY's init): judge them against tier 1 too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.growth.gradmax_init import b_matrices
from harness.growth.new_units import Batch, resumed
from harness.growth.tiny_init import tiny_spectra
from harness.models.consumers import wirings
from harness.oracle.candidates import Candidate
from harness.probes.gradmax import top_singular_values

TINY, GRADMAX_PER_UNIT = "tiny", "gradmax_per_unit"
FIRST_ORDER: tuple[str, ...] = (TINY, GRADMAX_PER_UNIT)


def per_unit(values: torch.Tensor, k: int) -> float:
    """sum of the first k values / k (values beyond the rank count as 0)."""
    return float(values[:k].sum()) / k


def first_order_signals(
    net: nn.Module, batches: Sequence[Batch], candidates: Sequence[Candidate], image_size: int
) -> dict[str, dict[str, float]]:
    """{``tiny``: candidate -> score, ``gradmax_per_unit``: candidate -> score} over the widen candidates ({} when
    there are none); ``net`` is left as it was (eval-mode passes, no weight written)."""
    widen = [c for c in candidates if c.kind == "widen"]
    if not widen:
        return {}
    k = {c.target: max(1, int(c.amount)) for c in widen}
    wired = wirings(net, list(k), image_size=image_size)
    run, ready = resumed(net, batches, list(k))
    lambdas = {t: lam for t, (_, _, lam) in tiny_spectra(run, ready, wired, k).items()}
    sigmas = {t: top_singular_values(b, k[t]) for t, b in b_matrices(run, ready, wired).items()}
    return {
        TINY: {c.name: per_unit(lambdas[c.target] ** 2, k[c.target]) for c in widen},
        GRADMAX_PER_UNIT: {c.name: per_unit(sigmas[c.target], k[c.target]) for c in widen},
    }
