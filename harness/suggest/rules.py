"""Rules: probe metrics of a run -> ranked architecture edits, each citing the metrics it used.

Why one small function per rule: a reader should be able to check each piece of advice against the
probe that motivated it, and argue with a threshold (all in ``conf/suggest.yaml``) without reading the
others. A rule gets a `RunSummary` (flat metrics, seed means for a multirun) and the config; it returns
suggestions (possibly none: it is *silent*), or raises `MissingInputs` naming the keys it lacks (the
CLI prints ``skipped: <rule>: needs <keys>``).

Score (the ranking): every rule scores its own suggestion in [0, 1], as the strength of its evidence:
  curve_cluster   the layer's share of the above-control curve detectors x (1 - orientation_coverage / 2)
  prune_dead      the dead-unit fraction of the branch
  insert_at_jump  the read-out accuracy jump between the two layers (+ cka_weight x the CKA drop there)
  lineage         widen again: curve + half of other-detector fraction of the added units; stop: dead +
                  duplicate fraction
  class_weakness  how far the curve classes' mean accuracy lags the other classes'
Each is multiplied by ``weights.<rule>``; rules that propose the same edit (same target and sign) are
merged and their scores ADD (agreeing evidence ranks higher); ties keep the order of ``RULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.facts import keys as pk
from harness.facts.edits import CONCAT_BRANCHES
from harness.facts.overrides import Edit, as_overrides, base_layer, check, compose
from harness.suggest.load import RunSummary, is_branch


class MissingInputs(Exception):
    """A rule cannot run: the metrics (or model facts) it reads are absent."""

    def __init__(self, needs: list[str]) -> None:
        super().__init__(", ".join(needs))
        self.needs = needs


@dataclass
class Suggestion:
    """One ranked edit. ``next_run``: the run's edits plus this one; ``problem``: why harness-train would refuse it."""

    edit: Edit
    score: float
    rules: list[str]
    evidence: list[str]
    used: dict[str, float]
    next_run: list[str] = field(default_factory=list)
    problem: str | None = None


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _cite(used: dict[str, float], keys: list[str]) -> str:
    return "[" + ", ".join(f"{k}={_fmt(used[k])}" for k in keys if k in used) + "]"


def _per_layer(metrics: dict[str, float], probe: str, metric: str) -> dict[str, float]:
    """``<probe>/<name>/<metric>`` -> {name: value}."""
    prefix, suffix = f"{probe}/", f"/{metric}"
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix) : -len(suffix)] if key.startswith(prefix) and key.endswith(suffix) else ""
        if name and "/" not in name:
            out[name] = value
    return out


def _need_channels(run: RunSummary) -> None:
    if not run.channels:
        raise MissingInputs(["model.channels (an InceptionV1 run: record['model']['channels'] or config.model)"])
    if not run.family.has_plan and not run.targets:
        why = f": {run.widen_error}" if run.widen_error else " (a record of this harness version)"
        raise MissingInputs([f"model.widen_targets of a model torch.fx can trace{why}"])


def _need(able: bool, what: str) -> None:
    """A rule whose edit the run's model family cannot make is skipped, naming the family that can."""
    if not able:
        raise MissingInputs([f"an InceptionV1 model ({what})"])


def _widen_amount(width: int, cfg: Any) -> int:
    return max(int(cfg.min_widen), round(float(cfg.widen_fraction) * width))


def _gaps(run: RunSummary, layer: str) -> str:
    """'gaps at 337.5-67.5, 112.5-157.5 deg' from the derived orientation bins (empty string when unknown/none).

    The bins are the curves probe's own (:mod:`harness.facts.keys`, centred on 0 deg), so the empty bins
    named here are exactly the ones `orientation_coverage` leaves out; adjacent empty bins merge, across 0 too.
    """
    prefix = f"{pk.CURVES}/{layer}/{pk.ORIENTATION}/"
    counts = {k[len(prefix) :]: v for k, v in run.metrics.items() if k.startswith(prefix)}
    n_bins = len(counts)
    if not n_bins:
        return ""
    empty = [i for i in range(n_bins) if counts.get(pk.orientation_label(i, n_bins), 0.0) < 0.5]
    if not empty or len(empty) == n_bins:
        return "" if not empty else "gaps at 0-360 deg"
    runs: list[list[int]] = []
    for i in empty:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == n_bins - 1:  # the last bin touches the first
        runs[0] = runs.pop() + runs[0]
    spans = [(pk.orientation_span(r[0], n_bins)[0], pk.orientation_span(r[-1], n_bins)[1]) for r in runs]
    return "gaps at " + ", ".join(f"{a:g}-{b:g}" for a, b in spans) + " deg"


def _curve_layer(run: RunSummary, cfg: Any) -> tuple[str | None, dict[str, float], float]:
    """(layer with most curve detectors above the random-init control, or None when the model has fewer than
    curve_min_detectors above control; net count per layer; total above control)."""
    det = {k: v for k, v in _per_layer(run.metrics, pk.CURVES, pk.DETECTORS).items() if not is_branch(k)}
    net = {k: v - run.metrics.get(pk.key(pk.CURVES, k, pk.DETECTORS_RANDOM_INIT), 0.0) for k, v in det.items()}
    total = sum(max(v, 0.0) for v in net.values())
    enough = total > 0 and total >= float(cfg.curve_min_detectors)
    return (max(net, key=net.get) if enough else None), net, total


def _curve_branch(run: RunSummary, layer: str, cfg: Any, by_count: bool = True) -> tuple[str, str]:
    """The branch of ``layer`` to widen for curves (most detectors when ``by_count``, else cfg.curve_branch), a note.

    Any other model: the widen target growing ``layer`` (its widest widenable conv, or the one feeding it; None when
    nothing grows it), named in the note."""
    if not run.family.has_plan:
        target = run.grow_target(layer)
        return target, f"widen {target}" if target and target != layer else ""
    if f"{layer}_5x5" not in run.channels:
        return layer, ""  # a stem layer is its own widen target
    counts = {b: run.metrics.get(pk.key(pk.CURVES, f"{layer}_{b}", pk.DETECTORS), 0.0) for b in CONCAT_BRANCHES}
    if by_count and max(counts.values()) > 0:
        b = max(counts, key=counts.get)
        return f"{layer}_{b}", f"{layer}_{b} holds {_fmt(counts[b])}"
    return f"{layer}_{cfg.curve_branch}", ""


def curve_cluster(run: RunSummary, cfg: Any) -> list[Suggestion]:
    """Widen where curve detectors concentrate (curves/<layer>/detectors above detectors_random_init)."""
    layer, net, total = _curve_layer(run, cfg)
    if not net:
        raise MissingInputs(["curves/<layer>/detectors"])
    _need_channels(run)
    if layer is None:
        return []
    branch, where = _curve_branch(run, layer, cfg)
    if branch is None:
        return []  # nothing in or before the layer can be widened (e.g. a ConvNeXt downsample)
    m = run.metrics
    keys = [
        pk.key(pk.CURVES, layer, pk.DETECTORS),
        pk.key(pk.CURVES, layer, pk.DETECTORS_RANDOM_INIT),
        pk.key(pk.CURVES, layer, pk.ORIENTATION_COVERAGE),
    ]
    keys += [pk.key(pk.CURVES, branch, pk.DETECTORS)] if where else []
    used = {k: m[k] for k in keys if k in m}
    coverage = m.get(pk.key(pk.CURVES, layer, pk.ORIENTATION_COVERAGE))
    text = f"{layer} holds {_fmt(net[layer])} of {_fmt(total)} curve detectors above the random-init control"
    text += f" ({where})" if where else ""
    if coverage is not None:
        gaps = _gaps(run, layer)
        text += f", orientation coverage {_fmt(coverage)}" + (f" ({gaps})" if gaps else "")
    score = (net[layer] / total) * (1.0 - 0.5 * (0.5 if coverage is None else coverage))
    edit = Edit("widen", branch, _widen_amount(run.channels[branch], cfg))
    return [Suggestion(edit, score, ["curve_cluster"], [f"curves: {text} {_cite(used, keys)}"], used)]


def prune_dead(run: RunSummary, cfg: Any) -> list[Suggestion]:
    """Prune (negative widen) branches / stem layers with many dead units (activations/<branch>/dead_fraction).

    InceptionV1 only: on other models model.widen only adds units, and a block output's dead units are not the
    units of any one conv (a residual stream)."""
    _need(run.family.prunes, "pruning: model.widen on other models only adds units")
    dead = {k: v for k, v in _per_layer(run.metrics, pk.ACTIVATIONS, pk.DEAD_FRACTION).items() if k in run.channels}
    dead = {k: v for k, v in dead.items() if is_branch(k) or not k.startswith("mixed")}  # widen targets only
    if not dead:
        _need_channels(run)
        raise MissingInputs(["activations/<branch>/dead_fraction"])
    out = []
    for name, frac in dead.items():
        width = run.channels[name]
        n = min(round(frac * width), width - 1)  # keep at least one channel
        if frac >= float(cfg.dead_fraction) and n >= 1:
            key = pk.key(pk.ACTIVATIONS, name, pk.DEAD_FRACTION)
            used = {key: frac}
            text = f"activations: {frac:.0%} dead units in {name} ({width} channels) {_cite(used, [key])}"
            out.append(Suggestion(Edit("widen", name, -n), frac, ["prune_dead"], [text], used))
    return out


def insert_at_jump(run: RunSummary, cfg: Any) -> list[Suggestion]:
    """Insert a block where a linear read-out (linear/<layer>/<target>_acc) jumps between consecutive measured
    layers; the block goes right before the later layer (after the mixed layer, or inserted block, preceding it)."""
    _need(run.family.inserts, "model.insert")
    _need_channels(run)
    layers, m = run.layers(), run.metrics
    found, best = False, {}
    for target in cfg.linear_targets:
        acc = _per_layer(m, pk.LINEAR, pk.linear_acc(target))
        found = found or bool(acc)
        measured = [name for name in layers if name in acc]
        for a, b in zip(measured, measured[1:]):
            before = layers[layers.index(b) - 1]  # the new block goes between this layer and b
            jump = acc[b] - acc[a]
            if not before.startswith("mixed") or jump < float(cfg.linear_jump):
                continue
            keys = [pk.key(pk.LINEAR, x, pk.linear_acc(target)) for x in (a, b)]
            used = {k: m[k] for k in keys}
            text = (
                f"linear: {target} read-out jumps {acc[a]:.2f} -> {acc[b]:.2f} between {a} and {b} {_cite(used, keys)}"
            )
            evidence, score = [text], jump
            ck = [pk.key(pk.CKA, x, pk.CKA_TO_REFERENCE) for x in (a, b)]
            if all(k in m for k in ck) and m[ck[1]] < m[ck[0]]:
                used.update({k: m[k] for k in ck})
                evidence.append(f"cka: {b} moved further from its initial weights than {a} {_cite(used, ck)}")
                score += float(cfg.cka_weight) * (m[ck[0]] - m[ck[1]])
            where = base_layer(before)
            if where not in best or best[where].score < min(score, 1.0):
                best[where] = Suggestion(Edit("insert", where), min(score, 1.0), ["insert_at_jump"], evidence, used)
    if not found:
        raise MissingInputs([f"linear/<layer>/{t}_acc" for t in cfg.linear_targets])
    return list(best.values())


def lineage(run: RunSummary, cfg: Any) -> list[Suggestion]:
    """Widen again where the last widen's units became detectors; undo the part that went dead / duplicate."""
    frac: dict[str, dict[str, float]] = {}
    for key, value in run.metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "lineage" and parts[2] == "added":
            frac.setdefault(parts[1], {})[parts[3]] = value
    if not frac:
        raise MissingInputs(["lineage/<branch>/added/<category>_frac (a run with widen edits and the lineage probe)"])
    out = []
    for branch, f in frac.items():
        counts = [f.get(c, 0.0) for c in pk.LINEAGE_CATEGORIES]
        added = sum(counts) or float(run.widen.get(branch, 0))
        good = f.get("curve_detector_frac", 0.0) + 0.5 * f.get("other_detector_frac", 0.0)
        waste = f.get("dead_frac", 0.0) + f.get("duplicate_frac", 0.0)
        pre = f"lineage/{branch}/added/"
        if good >= float(cfg.lineage_detector_frac):
            keys = [pre + k for k in ("curve_detector", "curve_detector_frac", "other_detector_frac")]
            used = {k: run.metrics[k] for k in keys if k in run.metrics}
            n_det = f.get("curve_detector", good * added)
            text = f"lineage: last widen here gave {_fmt(n_det)}/{_fmt(added)} new curve detectors {_cite(used, keys)}"
            amount = run.widen.get(branch) or int(added) or _widen_amount(run.channels.get(branch, 0), cfg)
            out.append(Suggestion(Edit("widen", branch, max(1, amount)), min(good, 1.0), ["lineage"], [text], used))
        elif waste >= float(cfg.lineage_waste_frac):
            n = min(round(waste * added), max(run.widen.get(branch, 0), 0))
            if n >= 1:
                keys = [pre + k for k in ("dead_frac", "duplicate_frac")]
                used = {k: run.metrics[k] for k in keys if k in run.metrics}
                text = f"lineage: {waste:.0%} of the units added here are dead or duplicates, stop widening"
                text += f" {_cite(used, keys)}"
                out.append(Suggestion(Edit("widen", branch, -n), min(waste, 1.0), ["lineage"], [text], used))
    return out


def class_weakness(run: RunSummary, cfg: Any) -> list[Suggestion]:
    """Curve-dependent classes lag the others (<class_metric>/<class>) -> more capacity where curves live."""
    metric = str(cfg.class_metric)
    acc = {c: run.metrics[f"{metric}/{c}"] for c in run.classes if f"{metric}/{c}" in run.metrics}
    curve = {c: v for c, v in acc.items() if c in set(cfg.curve_classes)}
    other = {c: v for c, v in acc.items() if c not in curve}
    if not curve or not other:
        raise MissingInputs([f"{metric}/<curve class>", f"{metric}/<other class>"])
    _need_channels(run)
    gap = sum(other.values()) / len(other) - sum(curve.values()) / len(curve)
    if gap < float(cfg.class_gap):
        return []
    cluster = _curve_layer(run, cfg)[0]
    branch, _ = _curve_branch(run, cluster or str(cfg.curve_layer), cfg, by_count=cluster is not None)
    if branch not in run.channels:
        return []  # the configured curve layer is not in this model (cut off by last_layer; another family's names)
    worst = sorted(curve, key=curve.get)[:3]
    keys = [f"{metric}/{c}" for c in worst]
    used = {k: run.metrics[k] for k in keys}
    text = (f"{metric}: curve classes lag the others by {gap:.2f} (mean {sum(curve.values()) / len(curve):.2f} vs "
            f"{sum(other.values()) / len(other):.2f}; worst {_cite(used, keys)})")  # fmt: skip
    edit = Edit("widen", branch, _widen_amount(run.channels[branch], cfg))
    return [Suggestion(edit, min(gap, 1.0), ["class_weakness"], [text], used)]


RULES: dict[str, Callable[[RunSummary, Any], list[Suggestion]]] = {
    "curve_cluster": curve_cluster,
    "prune_dead": prune_dead,
    "insert_at_jump": insert_at_jump,
    "lineage": lineage,
    "class_weakness": class_weakness,
}


def _merge(found: list[Suggestion]) -> list[Suggestion]:
    """One suggestion per (kind, target, sign): scores add, evidence accumulates, the larger amount wins."""
    merged: dict[tuple[str, str, bool], Suggestion] = {}
    for s in found:
        key = (s.edit.kind, s.edit.target, s.edit.amount > 0)
        if key not in merged:
            merged[key] = s
            continue
        m = merged[key]
        amount = max(m.edit.amount, s.edit.amount, key=abs)
        evidence = m.evidence + [e for e in s.evidence if e not in m.evidence]
        merged[key] = Suggestion(Edit(m.edit.kind, m.edit.target, amount), m.score + s.score,
                                 m.rules + s.rules, evidence, {**m.used, **s.used})  # fmt: skip
    return list(merged.values())


def suggest(run: RunSummary, cfg: Any) -> tuple[list[Suggestion], list[tuple[str, list[str]]]]:
    """Ranked suggestions (best first, each with its next-run overrides and validity) and the skipped rules."""
    found, skipped = [], []
    for name, rule in RULES.items():
        try:
            for s in rule(run, cfg):
                s.score *= float(cfg.weights.get(name, 1.0))
                found.append(s)
        except MissingInputs as err:
            skipped.append((name, err.needs))
    order = list(RULES)
    ranked = sorted(_merge(found), key=lambda s: (-round(s.score, 9), order.index(s.rules[0])))
    for s in ranked:
        widen, insert = compose(run.widen, run.insert, s.edit)
        s.next_run = as_overrides(widen, insert)
        s.problem = check(run.model, widen, insert, run.targets)
    return ranked, skipped
