"""Growth policies: where one round of the grow loop spends its parameter budget.

Every policy answers the same question with the same budget (``grow.budget`` parameters per round), so an
arm differs from another only in *where* it grows:

* ``suggest``        harness-suggest's top accepted growth edit (a positive widen, or an insert in scratch mode),
                     resized to the budget; when no rule proposes one, the configured curve prior
                     (``curve_layer``/``curve_branch`` of conf/suggest.yaml), marked ``fallback``.
* ``gradmax``,       the top candidate of that criterion (``<probe>/<target>/...`` read from the round's record
  ``effective_rank`` by :func:`harness.oracle.signals.probe_signal`).
* ``tiny``           the top candidate of TINY's projected first-order improvement per added unit, measured on the
                     round's trained network (:func:`harness.oracle.first_order.first_order_signals`, set A).
* ``oracle``         tier 0's argmax (:mod:`harness.oracle.tier0`: every candidate added with TINY's init, its
                     realised train-loss drop on set B): the ceiling, what choosing well can buy at all.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.facts.errors import ConfigError
from harness.facts.keys import EFFECTIVE_RANK, GRADMAX
from harness.models.pricing import added, count_params
from harness.oracle.candidates import Candidate, enumerate_candidates
from harness.oracle.signals import probe_signal
from harness.suggest.load import RunSummary

TINY, ORACLE = "tiny", "oracle"
POLICIES: tuple[str, ...] = ("suggest", GRADMAX, EFFECTIVE_RANK, TINY, ORACLE, "random", "uniform", "none",
                             "to_width")  # fmt: skip
PROBE_POLICIES: tuple[str, ...] = (GRADMAX, EFFECTIVE_RANK)  # policies that read their own probe's score
# Policies that measure the round's trained network on fixed training images (tier 0's sets A and B) instead of
# reading a probe: they need the checkpoint and the data, so the loop calls :func:`measure` for them.
MEASURED_POLICIES: tuple[str, ...] = (TINY, ORACLE)
# Their sets (A, B) of training images: grow.oracle_set_a / grow.oracle_set_b, else these. Not harness-oracle's set B
# (8192): the oracle policy runs tier 0 on every candidate every round, so a chain keeps the cheaper 1024 images
# of the measured loops (docs/results/2026-12-06-loop-ceiling.md) and says so in its experiment config.
MEASURED_SETS = {"oracle_set_a": 512, "oracle_set_b": 1024}
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


def pick_best(policy: str, scores: Mapping[str, float], candidates: Sequence[Candidate]) -> Pick:
    """The candidate with the highest score (ties: forward order), the top three cited as evidence."""
    if not scores:
        raise ConfigError(f"grow.policy={policy} scored no candidate (it scores widen candidates only)")
    best = max((c.name for c in candidates if c.name in scores), key=lambda name: scores[name])
    pick = _of(next(c for c in candidates if c.name == best))
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    pick.evidence = [f"{policy}: top score {scores[best]:.4g} at {best} (next: "
                     + ", ".join(f"{n}={v:.4g}" for n, v in top[1:]) + ")"]  # fmt: skip
    pick.detail["scores"] = {n: round(v, 8) for n, v in top}
    return pick


def measured_sets(grow: Mapping[str, Any]) -> tuple[int, int]:
    """(set A, set B) image counts of a measured policy, each one line when not an integer >= 1."""
    out = []
    for key, default in MEASURED_SETS.items():
        value = grow.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"grow.{key} must be an integer >= 1 (training images), got {value!r}")
        out.append(int(value))
    return out[0], out[1]


def measure(
    policy: str,
    model_cfg: Mapping[str, Any],
    ckpt: str,
    data_cfg: Mapping[str, Any],
    candidates: Sequence[Candidate],
    num_classes: int,
    sets: tuple[int, int],
    seed: int = 0,
) -> dict[str, float]:
    """Candidate -> score of a measured policy on the trained network ``ckpt`` (``model_cfg``: the round's model
    config), on tier 0's fixed sets of ``sets`` = (A, B) training images: ``tiny`` reads set A only, ``oracle``
    grows every candidate (tier 0) and scores its train-loss gain on B."""
    from harness.models.build import load_net
    from harness.oracle import tier0
    from harness.oracle.first_order import TINY as TINY_SIGNAL
    from harness.oracle.first_order import first_order_signals

    fixed = tier0.fixed_sets(data_cfg, sets[0], sets[1], seed)
    net, _ = load_net(ckpt)
    image_size = int(fixed.b_images.shape[-1])
    if policy == TINY:
        return first_order_signals(net, fixed.a, candidates, image_size)[TINY_SIGNAL]
    if policy == ORACLE:
        rows, _ = tier0.tier0(model_cfg, ckpt, net, candidates, fixed, num_classes, image_size, seed)
        return {name: float(row[tier0.GAIN]) for name, row in rows.items()}
    raise ConfigError(f"grow.policy={policy} is not measured; measured: {', '.join(MEASURED_POLICIES)}")


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
        return added(arch, num_classes, widen, base=base) if widen else 0

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
    measured: Callable[[Sequence[Candidate]], Mapping[str, float]] | None = None,
) -> Pick:
    """The policy's edit for the model ``arch`` (nothing loaded) whose last round is summarised by ``run``;
    ``measured(candidates)`` scores the candidates for a measured policy (``tiny``, ``oracle``: see :func:`measure`)."""
    check_policy(policy)
    if policy in MEASURED_POLICIES and measured is None:
        raise ConfigError(f"grow.policy={policy} measures the trained network: pass the round's measurement")
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
    if policy in MEASURED_POLICIES:
        return pick_best(policy, measured(candidates), candidates)
    return pick_suggest(run, suggest_cfg, candidates)
