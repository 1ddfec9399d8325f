"""Oracle candidates: one edit each of about equal parameter cost, built from the base run.

Why exact costs: a candidate's gain only means something next to the others' at (nearly) the same number
of added parameters, and a formula for an edit's cost drifts from the network code, so costs are measured
by building the networks (cheap: no forward pass). Why a checked step 0: a widen that is not
function-preserving would mix "where" with "how much damage was done", so every continued candidate is
built exactly as its training job builds it (``model.init_from`` + ``model.widen``) and its logits are
compared with the trained base on real images; one that moves them by more than ``TOLERANCE`` is refused.

Inserts: harness cannot insert a block into a loaded network (``model.init_from`` fixes the inserted
blocks, and an inception block has no identity initialisation: its bottlenecks are narrower than its
input), so insert candidates exist only with ``from_scratch`` (every candidate retrained from init).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from harness.facts.edits import MIXED_NAMES, widen_targets
from harness.facts.errors import ConfigError
from harness.facts.family import family
from harness.facts.overrides import Edit
from harness.models.build import architecture
from harness.models.pricing import added, count_params, edited, units_for_budget
from harness.models.surgery import max_output_change

log = logging.getLogger(__name__)

CONTROL = "control"
INSERT_PREFIX = "insert_"
DEFAULT_BUDGET_FRACTION = 0.10  # of the base model's parameters
INSERT_RANGE = (0.5, 2.0)  # an insert is a candidate when its cost is within these multiples of the budget
TOLERANCE = 1e-5  # max |logit change| at step 0 for a function-preserving candidate


@dataclass(frozen=True)
class Candidate:
    """One edit: ``widen`` (``amount`` units on a stem layer / branch) or ``insert`` (a block after a mixed layer).

    ``max_change``: measured max |logit change| at step 0 (None when not measured: from scratch, control).
    """

    name: str
    kind: str
    target: str = ""
    amount: int = 0
    params_added: int = 0
    max_change: float | None = None

    @property
    def override(self) -> str:
        """The edit as one harness-train override (empty for the control)."""
        return Edit(self.kind, self.target, self.amount).incremental() if self.kind != CONTROL else ""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "override": self.override}


def block_of(target: str) -> str:
    """The stem layer or mixed block a widen target belongs to (``mixed3b_3x3_bottleneck`` -> ``mixed3b``)."""
    from harness.facts.edits import BRANCHES

    for branch in sorted(BRANCHES, key=len, reverse=True):
        if target.endswith(f"_{branch}"):
            return target[: -len(branch) - 1]
    return target


def enumerate_candidates(
    model_cfg: Mapping[str, Any],
    num_classes: int,
    budget: int | None = None,
    inserts: bool = False,
    only: Sequence[str] | None = None,
) -> tuple[list[Candidate], int]:
    """(candidates, budget in parameters) for the base run's model config; ``only`` restricts by name.

    Widen targets get ``round(budget / cost of one unit)`` units (>= 1); with ``inserts``, an insert after
    a mixed layer joins when its cost is within ``INSERT_RANGE`` x the budget.
    """
    arch = architecture(model_cfg)
    if not family(arch).has_plan:
        got = arch.get("_target_")
        raise ConfigError(f"harness-oracle needs an InceptionV1 base run (widen/insert edits); got {got}")
    base = count_params(arch, num_classes)
    budget = round(DEFAULT_BUDGET_FRACTION * base) if budget is None else int(budget)
    if budget < 1:
        raise ConfigError(f"--budget must be >= 1 parameter, got {budget}")
    targets = widen_targets(arch.get("insert"), arch.get("last_layer"))
    wanted = set(only) if only else None
    names = [*targets, *(f"{INSERT_PREFIX}{m}" for m in MIXED_NAMES if f"{m}_1x1" in targets)]
    if wanted is not None and (unknown := sorted(wanted - set(names))):
        raise ConfigError(f"unknown candidate(s) {', '.join(unknown)} in --candidates; valid: {', '.join(names)}")
    out = []
    for target in targets:
        if wanted is not None and target not in wanted:
            continue
        amount = units_for_budget(arch, num_classes, target, budget, base)
        out.append(Candidate(target, "widen", target, amount, added(arch, num_classes, {target: amount}, base=base)))
    lo, hi = INSERT_RANGE
    for name in names[len(targets) :]:
        if wanted is not None and name not in wanted:
            continue
        after = name[len(INSERT_PREFIX) :]
        cost = added(arch, num_classes, insert=[after], base=base)
        if not inserts:
            if wanted is not None:
                raise ConfigError(f"candidate {name} is an insert: only --from-scratch trains inserts (a block cannot "
                                  f"be inserted into a loaded network function-preservingly)")  # fmt: skip
            continue
        if lo * budget <= cost <= hi * budget or wanted is not None:
            out.append(Candidate(name, "insert", after, 1, cost))
    return out, budget


def continued_model(model_cfg: Mapping[str, Any], ckpt: str, candidate: Candidate) -> dict[str, Any]:
    """The model config of a job continuing from ``ckpt`` with the candidate's widen on top (control: none)."""
    arch = architecture(model_cfg)
    widen = {candidate.target: candidate.amount} if candidate.kind == "widen" else {}
    if candidate.kind == "insert":
        raise ConfigError(f"candidate {candidate.name}: inserts cannot continue from a checkpoint; use --from-scratch")
    return {**arch, "widen": widen, "init_from": str(ckpt)}


def scratch_model(model_cfg: Mapping[str, Any], candidate: Candidate) -> dict[str, Any]:
    """The model config of a job training the base architecture plus the candidate's edit from initialisation."""
    arch = architecture(model_cfg)
    if candidate.kind == "widen":
        return edited(arch, {candidate.target: candidate.amount})
    return edited(arch, {}, [candidate.target] if candidate.kind == "insert" else [])


def check_preserving(
    base: nn.Module, model_cfg: Mapping[str, Any], ckpt: str, candidates: Sequence[Candidate], images: torch.Tensor
) -> tuple[list[Candidate], list[Candidate]]:
    """(function-preserving candidates, the others), each with its measured step-0 max |logit change|.

    Built as its job builds it (``continued_model``), so what is checked is what is trained. The others are
    left out of the oracle (never mixed with preserving ones); the caller reports them. Compared in float64:
    a wider layer sums in another order, and float32 rounding alone moves logits of the trained tiny model by
    ~3e-5, which would hide whether the *function* changed.
    """
    num_classes = base.fc.out_features if hasattr(base, "fc") else None
    base, images = copy.deepcopy(base).double(), images.double()
    kept, refused = [], []
    for cand in candidates:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = hydra.utils.instantiate(OmegaConf.create(continued_model(model_cfg, ckpt, cand)),
                                          num_classes=num_classes)  # fmt: skip
        change = max_output_change(base, net.double(), images)
        checked = Candidate(cand.name, cand.kind, cand.target, cand.amount, cand.params_added, change)
        (kept if change <= TOLERANCE else refused).append(checked)
    return kept, refused
