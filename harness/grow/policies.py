"""Growth policies: where one round of the grow loop spends its parameter budget.

Every policy answers the same question with the same budget (``grow.budget`` parameters per round), so an
arm differs from another only in *where* it grows:

* ``suggest``        harness-suggest's top accepted growth edit (a positive widen, or an insert in scratch mode),
                     resized to the budget; when no rule proposes one, the configured curve prior
                     (``curve_layer``/``curve_branch`` of conf/suggest.yaml), marked ``fallback``.
* ``gradmax``,       the top candidate of that criterion (``<probe>/<target>/...`` read from the round's record
  ``effective_rank`` by :func:`harness.oracle.signals.probe_signal`).
* ``random``         a seeded draw among the same equal-cost candidates.
* ``uniform``        the budget spread over every branch of every mixed block in proportion to its width.
* ``none``           no growth: the compute control.
* ``to_width``       every widen target (stem and branches) grows toward its width at ``grow.target_width``, an
                     equal share per round, so the last round ends at the target architecture (``grow_early``);
                     the budget does not apply.

Candidates and their budget-sized amounts come from :func:`harness.oracle.candidates.enumerate_candidates`
(one source of truth for "an edit of about this many parameters"); this module only chooses among them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.facts.errors import ConfigError
from harness.facts.keys import EFFECTIVE_RANK, GRADMAX
from harness.oracle.candidates import Candidate, count_params, enumerate_candidates
from harness.oracle.signals import probe_signal
from harness.suggest.load import RunSummary

POLICIES: tuple[str, ...] = ("suggest", GRADMAX, EFFECTIVE_RANK, "random", "uniform", "none", "to_width")
PROBE_POLICIES: tuple[str, ...] = (GRADMAX, EFFECTIVE_RANK)  # policies that read their own probe's score
UNIFORM_STEPS = 16  # bisection steps for the uniform policy's width fraction (f to 1/65536 of its bracket)


@dataclass
class Pick:
    """One round's edit: widen amounts per target and inserted blocks, with the evidence the policy cited."""

    widen: dict[str, int] = field(default_factory=dict)
    insert: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.widen and not self.insert


def check_policy(name: str) -> None:
    if name not in POLICIES:
        raise ConfigError(f"unknown grow.policy {name!r}; valid: {', '.join(POLICIES)}")


def _of(cand: Candidate) -> Pick:
    if cand.kind == "insert":
        return Pick(insert=[cand.target], detail={"candidate": cand.name, "params_added": cand.params_added})
    return Pick(widen={cand.target: cand.amount}, detail={"candidate": cand.name, "params_added": cand.params_added})


def pick_suggest(run: RunSummary, suggest_cfg: Any, candidates: Sequence[Candidate]) -> Pick:
    """harness-suggest's best-ranked growth edit whose target is a candidate, at the candidate's (budget) size."""
    from harness.suggest.rules import suggest

    ranked, skipped = suggest(run, suggest_cfg)
    by_target = {(c.kind, c.target): c for c in candidates}
    for s in ranked:
        if s.edit.kind == "widen" and s.edit.amount <= 0:
            continue  # a prune is not growth
        cand = by_target.get((s.edit.kind, s.edit.target))
        if cand is None:
            continue  # e.g. an insert in continue mode: cannot be grown function-preservingly
        pick = _of(cand)
        pick.evidence = list(s.evidence)
        pick.detail.update(rules=list(s.rules), score=round(s.score, 4), suggested=s.edit.incremental())
        return pick
    prior = f"{suggest_cfg.curve_layer}_{suggest_cfg.curve_branch}"
    cand = by_target.get(("widen", prior)) or by_target.get(("widen", str(suggest_cfg.curve_layer)))
    if cand is None:
        raise ConfigError(f"harness-suggest proposed no growth edit and its curve prior {prior} is not a widen "
                          f"target of this model; set curve_layer/curve_branch in conf/suggest.yaml")  # fmt: skip
    pick = _of(cand)
    pick.evidence = [f"no rule proposed an accepted growth edit (skipped: {', '.join(n for n, _ in skipped) or '-'});"
                     f" the configured curve prior {cand.target}"]  # fmt: skip
    pick.detail["fallback"] = True
    return pick


def pick_probe(probe: str, metrics: Mapping[str, float], candidates: Sequence[Candidate]) -> Pick:
    """The candidate with the highest ``<probe>`` score (ties: forward order); an error when the probe did not run."""
    scores = probe_signal(metrics, probe, candidates)
    if not scores:
        raise ConfigError(f"grow.policy={probe} needs the {probe} probe's scores (<{probe}>/<target>/...) in the "
                          f"round's record; add {probe} to grow.probes.{probe}")  # fmt: skip
    best = max(scores, key=lambda name: scores[name])  # first maximum in candidate order
    cand = next(c for c in candidates if c.name == best)
    pick = _of(cand)
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    pick.evidence = [f"{probe}: top score {scores[best]:.4g} at {best} (next: "
                     + ", ".join(f"{n}={v:.4g}" for n, v in top[1:]) + ")"]  # fmt: skip
    pick.detail["scores"] = {n: round(v, 6) for n, v in top}
    return pick


def pick_random(candidates: Sequence[Candidate], rng: random.Random) -> Pick:
    cand = rng.choice(list(candidates))
    pick = _of(cand)
    pick.evidence = [f"random: seeded draw among {len(candidates)} equal-cost candidates"]
    return pick


def uniform_widen(arch: Mapping[str, Any], num_classes: int, budget: int) -> tuple[dict[str, int], int, float]:
    """(widen per mixed-block branch, parameters added, f): ``round(f x width)`` units each, f chosen so the cost
    is closest to ``budget``. Why a search: costs interact (two widened neighbours add their cross weights)."""
    from harness.facts.edits import widen_targets
    from harness.facts.overrides import channels

    targets = [t for t in widen_targets(arch.get("insert"), arch.get("last_layer")) if t.startswith("mixed")]
    width = channels(arch)
    base = count_params(arch, num_classes)

    def edit(f: float) -> dict[str, int]:
        return {t: n for t in targets if (n := round(f * width[t])) > 0}

    def cost(f: float) -> int:
        widen = edit(f)
        merged = {**(arch.get("widen") or {})}
        for k, v in widen.items():
            merged[k] = merged.get(k, 0) + v
        return count_params({**arch, "widen": merged}, num_classes) - base if widen else 0

    lo, hi = 0.0, 1.0
    while cost(hi) < budget:
        hi *= 2
    for _ in range(UNIFORM_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) < budget else (lo, mid)
    best = min((lo, hi), key=lambda f: abs(cost(f) - budget))
    return edit(best), cost(best), best


def to_width(base: Mapping[str, Any], arch: Mapping[str, Any], target_width: float, k: int, rounds: int) -> Pick:
    """Round ``k`` of ``rounds``: each widen target of ``arch`` grows to ``base + (goal - base) * k / rounds`` units,
    ``base`` its width in the base model and ``goal`` at ``target_width`` (the base's own widen edits kept)."""
    from harness.facts.edits import widen_targets
    from harness.facts.overrides import channels

    start, now, goal = channels(base), channels(arch), channels({**base, "width": target_width})
    widen = {}
    for t in widen_targets(arch.get("insert"), arch.get("last_layer")):
        want = start[t] + round((goal[t] - start[t]) * k / rounds)
        if want > now[t]:
            widen[t] = want - now[t]
    text = f"to_width: round {k}/{rounds} toward width {target_width:g} ({len(widen)} targets widened)"
    return Pick(widen=widen, evidence=[text], detail={"target_width": target_width})


def candidates_for(arch: Mapping[str, Any], num_classes: int, budget: int, inserts: bool) -> list[Candidate]:
    return enumerate_candidates(arch, num_classes, budget, inserts)[0]


def choose(
    policy: str,
    arch: Mapping[str, Any],
    num_classes: int,
    budget: int,
    run: RunSummary,
    rng: random.Random,
    suggest_cfg: Any = None,
    inserts: bool = False,
) -> Pick:
    """The policy's edit for the model ``arch`` (nothing loaded) whose last round is summarised by ``run``."""
    check_policy(policy)
    if policy == "none":
        return Pick(evidence=["none: the compute control (same steps, no growth)"], detail={"params_added": 0})
    if policy == "uniform":
        widen, added, f = uniform_widen(arch, num_classes, budget)
        text = f"uniform: {len(widen)} mixed-block branches widened by round({f:.3f} x their width)"
        return Pick(widen=widen, evidence=[text], detail={"params_added": added, "fraction": round(f, 4)})
    candidates = candidates_for(arch, num_classes, budget, inserts)
    if policy == "random":
        return pick_random(candidates, rng)
    if policy in PROBE_POLICIES:
        return pick_probe(policy, run.metrics, candidates)
    return pick_suggest(run, suggest_cfg, candidates)
