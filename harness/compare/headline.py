"""The headline: per variant, the findings beyond seed noise and how many replicate, next to the loss verdict.

Why: a single accuracy number hides most of what an architecture edit did; the findings beyond noise in the
headline family (:mod:`harness.compare.family`) are the "bits of feedback" the experiment produced. The lead
says "N findings beyond noise (K replicate on the split halves)"; then the config facts (never tested), what the
design could not resolve and the seeds it would take (:mod:`harness.compare.power`), and the exploratory rest.
The same facts go to headline.txt (people) and headline.json (scripts, CI).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.compare.load import Run
from harness.compare.power import power_text
from harness.compare.stats import EXPLORATORY, FACT, FAMILY, Effect
from harness.facts import keys

VERDICT_METRICS = (keys.TEST_ACC, keys.VAL_ACC, keys.TEST_LOSS, keys.VAL_LOSS)


def fmt(value: float | None, digits: int = 3) -> str:
    """Short number for people: 3 decimals for small values, 4 significant digits for large ones."""
    if value is None:
        return ""
    if abs(value) == float("inf"):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.4g}"


def _significance(e: Effect) -> str:
    if e.role == EXPLORATORY:
        return f"exploratory, p={e.p:.2g}" if e.p is not None else "exploratory"
    if e.beyond_noise:
        return f"beyond seed noise, q={e.q:.2g}"
    if e.beyond_noise is False:
        return f"not significant, p={e.p:.2g}"
    return e.note or "no p-value"


def verdict(effects: Sequence[Effect]) -> Effect | None:
    """The loss/accuracy effect to show next to the count: test/acc, else val/acc, else a loss."""
    found = {e.metric: e for e in effects if e.diff is not None}
    return next((found[m] for m in VERDICT_METRICS if m in found), None)


@dataclass
class Headline:
    """Headline lines plus the same facts as a JSON-ready dict.

    Usage: ``h = make_headline(runs, labels, baseline, effects); print(h.text); json.dump(h.data, f)``
    """

    lines: list[str]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def json(self) -> str:
        """Strict JSON: infinite effect sizes become the strings "inf"/"-inf", NaN becomes null."""
        return json.dumps(_json_safe(self.data), indent=1, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def channel_facts(base_runs: Sequence[Run], variant_runs: Sequence[Run]) -> dict[str, list[int]]:
    """`channels/<layer>` -> [baseline, variant] units where the arms' records differ (first finished run of each)."""
    base = next((r.channels for r in base_runs if r.finished), {})
    variant = next((r.channels for r in variant_runs if r.finished), {})
    return {f"channels/{k}": [base.get(k), variant.get(k)] for k in dict.fromkeys([*base, *variant])
            if base.get(k) != variant.get(k)}  # fmt: skip


def _facts_line(label: str, effects: Sequence[Effect], channels: dict[str, list[int]]) -> str | None:
    facts = [(e.metric, e.base_mean, e.variant_mean) for e in effects if e.role == FACT and e.diff]
    facts += [(k, *v) for k, v in channels.items()]
    if not facts:
        return None
    def show(x: float | None) -> str:
        return str(int(x)) if x is not None and float(x).is_integer() else (fmt(x) or "none")

    shown = "; ".join(f"{k} {show(b)} → {show(v)}" for k, b, v in facts[:5])
    more = f" (+{len(facts) - 5} more)" if len(facts) > 5 else ""
    return f"{label}: config facts (not tested): {shown}{more}"


def _power(label: str, tested: Sequence[Effect]) -> tuple[str | None, dict | None]:
    """The family metric closest to being resolved (fewest seeds needed; else the largest effect)."""
    open_ = [e for e in tested if not e.beyond_noise]
    if not open_:
        return None, None
    e = min(open_, key=lambda e: (e.seeds_needed is None, e.seeds_needed or 0, -abs(e.effect or 0.0)))
    text = f"{label}: power: {power_text(e.n_base, e.n_variant, e.metric, e.seeds_needed)}"
    return text, {"metric": e.metric, "seeds_needed_per_arm": e.seeds_needed, "effect": e.effect, "p": e.p}


def _variant_entry(
    variant: str, label: str, runs: Sequence[Run], base_runs: Sequence[Run], effects: Sequence[Effect],
    replication: Any,
) -> dict:
    finished = [r for r in runs if r.finished]
    base_n = sum(r.finished for r in base_runs)
    channels = channel_facts(base_runs, runs)
    compared = [e for e in effects if e.diff is not None]
    family = [e for e in compared if e.role == FAMILY]
    tested = [e for e in family if e.p is not None]
    beyond = [e for e in tested if e.beyond_noise]
    exploratory = [e for e in compared if e.role == EXPLORATORY]
    replicate = None if replication is None else len(replication.replicate)
    best = verdict(effects)
    entry: dict[str, Any] = {
        "variant": variant,
        "label": label,
        "seeds": len(finished),
        "runs_not_finished": len(runs) - len(finished),
        "metrics_compared": len(compared),
        "metrics_tested": len(tested),
        "metrics_beyond_noise": len(beyond),
        "findings": len(beyond),
        "replicate": replicate,
        "beyond_noise": [e.metric for e in beyond],
        "family": [e.metric for e in family],
        "facts": {e.metric: [e.base_mean, e.variant_mean] for e in effects if e.role == FACT and e.diff is not None}
        | channels,
        "exploratory": len(exploratory),
        "p_values": bool(tested),
        "verdict": None,
        "power": None,
        "extra_lines": [],
    }
    if not finished:
        entry["text"] = f"{label}: no finished runs ({len(runs)} not finished); nothing to compare"
        return entry
    if min(len(finished), base_n) < 2:
        count = (f"no test possible ({len(finished)} seed(s) vs {base_n} baseline seed(s); a test needs 2+ per "
                 f"side): effect sizes only, {len(compared)} metrics compared")  # fmt: skip
    elif tested:
        rep = ("replication needs 4+ seeds per side" if replicate is None
               else f"{replicate} replicate on the split halves")  # fmt: skip
        count = f"{len(beyond)} findings beyond noise ({rep}) in a family of {len(tested)} tests"
    else:
        count = f"no p-values (no family metric varies across seeds); {len(compared)} metrics compared"
    text = f"{label}: {count}"
    if best is not None:
        text += f"; {best.metric} {fmt(best.base_mean)} → {fmt(best.variant_mean)} ({_significance(best)})"
        entry["verdict"] = {
            "metric": best.metric,
            "baseline": best.base_mean,
            "variant": best.variant_mean,
            "diff": best.diff,
            "effect": best.effect,
            "p": best.p,
            "q": best.q,
            "beyond_noise": best.beyond_noise,
        }
    entry["text"] = text
    power, entry["power"] = _power(label, tested)
    facts = _facts_line(label, effects, channels)
    units = [e for e in exploratory if e.test == "unit bootstrap"]
    apart = [e for e in exploratory if e.ci is not None and (e.ci[0] > 0 or e.ci[1] < 0)]
    explore = (f"{label}: exploratory (effect sizes with 95% intervals, never called beyond noise): "
               f"{len(exploratory)} metrics, {len(units)} of them unit-level shifts; {len(apart)} intervals exclude 0"
               )  # fmt: skip
    entry["extra_lines"] = [line for line in (power, facts, explore if exploratory else None) if line]
    return entry


def make_headline(
    runs: Sequence[Run],
    labels: Mapping[str, str],
    baseline: str,
    effects: Mapping[str, Sequence[Effect]],
    alpha: float,
    replication: Mapping[str, Any] | None = None,
) -> Headline:
    """One lead line per non-baseline variant (then its power, facts and exploratory lines), framed by the
    baseline and the run counts."""
    base_n = sum(1 for r in runs if r.variant == baseline and r.finished)
    replication = replication or {}
    base_runs = [r for r in runs if r.variant == baseline]
    entries = [_variant_entry(v, labels[v], [r for r in runs if r.variant == v], base_runs, effects[v],
                              replication.get(v)) for v in effects]  # fmt: skip
    status = Counter(r.status for r in runs)
    counts = ", ".join(f"{n} {s}" for s, n in status.most_common())
    lines = [f"baseline: {labels[baseline]} ({base_n} finished seed(s))"]
    for entry in entries:
        lines += [entry["text"], *entry.pop("extra_lines")]
    if not entries:
        lines.append("no other variant to compare with the baseline")
    lines.append(f"runs: {counts} (only finished runs enter the statistics; BH alpha {alpha} within each "
                 f"variant's headline family; other metrics exploratory)")  # fmt: skip
    data = {
        "baseline": baseline,
        "baseline_label": labels[baseline],
        "baseline_seeds": base_n,
        "alpha": alpha,
        "runs": dict(status),
        "variants": entries,
        "lines": lines,
    }
    return Headline(lines, data)
