"""Signals: per-candidate scores computed from the base run before any candidate is tried.

Three families, each a dict candidate -> score (higher = "grow here"):
* growth probes, read by key from the base run's record (or a `harness-probe` run of its checkpoint):
  ``gradmax/<target>/score``; ``effective_rank/<target>/ratio_to_init`` (``fraction`` when the probe had no
  initial weights); ``north/<target>/score`` (NORTH's phi - gamma phi_init, :mod:`harness.probes.north`);
  ``sensli/<mixed layer>/score`` for the insert after that layer. A candidate the probe
  has no key for gets no score (it is left out of that signal's ranking, not scored 0).
* every harness-suggest rule (``harness.suggest.rules.RULES``) as run on the base: a suggestion to widen
  a candidate's target scores +score there, a suggestion to prune it (``prune_dead``) -score ("not here"),
  an insert suggestion scores the insert candidate; a rule that is silent on a candidate scores 0, and a
  rule that cannot run (its probe absent) gives no signal at all. ``ablation``: the Δloss per ablated unit
  of the candidate's layer (stem layer or mixed block), where the ablation probe ran (0 elsewhere).
* first-order scores of the base network per candidate at its own k (``tiny``, ``gradmax_per_unit``:
  :mod:`harness.oracle.first_order`), computed by the tier-0 run on its set A.
* ``random``: seeded uniform scores, the control every signal must beat.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.facts.keys import ABLATION, DELTA_LOSS, GROUP_SIZE, GROWTH_SCORES, RANDOM_GROUP, SENSLI
from harness.oracle.candidates import Candidate, block_of
from harness.oracle.first_order import FIRST_ORDER
from harness.suggest.load import RunSummary
from harness.suggest.rules import RULES, MissingInputs

INSERT_PROBES = (SENSLI,)  # keyed by the mixed layer an insert follows
RANDOM = "random"


def probe_signal(metrics: Mapping[str, float], probe: str, candidates: Sequence[Candidate]) -> dict[str, float]:
    """candidate -> ``<probe>/<key>/<metric>`` for the candidates the probe covers (empty when it did not run)."""
    kind = "insert" if probe in INSERT_PROBES else "widen"
    out = {}
    for cand in candidates:
        if cand.kind != kind:
            continue
        for metric in GROWTH_SCORES[probe]:
            value = metrics.get(f"{probe}/{cand.target}/{metric}")
            if value is not None and math.isfinite(value):
                out[cand.name] = float(value)
                break
    return out


def rule_signal(rule: str, run: RunSummary, cfg: Any, candidates: Sequence[Candidate]) -> dict[str, float] | None:
    """candidate -> the rule's signed score (0 where silent); None when the rule cannot run on this base."""
    try:
        found = RULES[rule](run, cfg)
    except MissingInputs:
        return None
    out = {cand.name: 0.0 for cand in candidates}
    for s in found:
        for cand in candidates:
            if cand.kind == s.edit.kind == "widen" and cand.target == s.edit.target:
                out[cand.name] += math.copysign(s.score, s.edit.amount)
            elif cand.kind == s.edit.kind == "insert" and cand.target == s.edit.target:
                out[cand.name] += s.score
    return out


def ablation_signal(metrics: Mapping[str, float], candidates: Sequence[Candidate]) -> dict[str, float] | None:
    """candidate -> max Δloss per ablated unit over the ablation groups of its layer; None without ablation keys."""
    per_layer: dict[str, float] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        own_group = len(parts) == 4 and not parts[2].startswith(RANDOM_GROUP)
        if own_group and parts[0] == ABLATION and parts[3] == DELTA_LOSS:
            size = metrics.get(f"{ABLATION}/{parts[1]}/{parts[2]}/{GROUP_SIZE}") or 0
            if size > 0 and math.isfinite(value):
                per_layer[parts[1]] = max(per_layer.get(parts[1], -math.inf), value / size)
    if not per_layer:
        return None
    out = {}
    for cand in candidates:
        where = cand.target if cand.kind == "insert" else block_of(cand.target)
        out[cand.name] = per_layer.get(cand.target, per_layer.get(where, 0.0))
    return out


def random_signal(candidates: Sequence[Candidate], seed: int = 0) -> dict[str, float]:
    """Seeded uniform scores, stable per candidate name (adding a candidate leaves the others' scores alone)."""
    return {c.name: float(np.random.default_rng([seed, zlib.crc32(c.name.encode())]).random()) for c in candidates}


def all_signals(
    run: RunSummary,
    cfg: Any,
    candidates: Sequence[Candidate],
    seed: int = 0,
    first_order: Mapping[str, dict[str, float]] | None = None,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """(signal -> candidate -> score, notes on signals that are absent and why). ``first_order``: the signals
    :func:`harness.oracle.first_order.first_order_signals` computed on the base network (tier 0's set A)."""
    signals: dict[str, dict[str, float]] = {}
    notes = []
    for probe in GROWTH_SCORES:  # probe -> metric keys read, first found wins
        found = probe_signal(run.metrics, probe, candidates)
        if found:
            signals[probe] = found
        elif probe in INSERT_PROBES and not any(c.kind == "insert" for c in candidates):
            notes.append(f"{probe}: absent (it scores inserts, and there are no insert candidates)")
        else:
            notes.append(f"{probe}: absent (no {probe}/<target>/... keys: the probe did not run on the base)")
    for rule in RULES:
        found = rule_signal(rule, run, cfg, candidates)
        if found is None:
            notes.append(f"{rule}: absent (the rule cannot run on the base run: its probe inputs are missing)")
        else:
            signals[rule] = found
    found = ablation_signal(run.metrics, candidates)
    if found is None:
        notes.append(f"{ABLATION}: absent (the ablation probe did not run on the base)")
    else:
        signals[ABLATION] = found
    if first_order:
        signals.update(first_order)
    else:
        notes.append(f"{', '.join(FIRST_ORDER)}: absent (computed on tier 0's set A: run --tier 0, or --tier 1 with "
                     "--top K)")  # fmt: skip
    signals[RANDOM] = random_signal(candidates, seed)
    return signals, notes
