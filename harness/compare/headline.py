"""The headline: per variant, how many metrics moved beyond seed noise, next to the loss/accuracy verdict.

Why: a single accuracy number hides most of what an architecture edit did; the count of metrics that
differ beyond noise is the number of "bits of feedback" the experiment produced. The same facts go to
headline.txt (people) and headline.json (scripts, CI).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.compare.load import Run
from harness.compare.stats import Effect

VERDICT_METRICS = ("test/acc", "val/acc", "test/loss", "val/loss")


def fmt(value: float | None, digits: int = 3) -> str:
    """Short number for people: 3 decimals for small values, 4 significant digits for large ones."""
    if value is None:
        return ""
    if abs(value) == float("inf"):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.4g}"


def _significance(e: Effect) -> str:
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


def _variant_entry(variant: str, label: str, runs: Sequence[Run], base_n: int, effects: Sequence[Effect]) -> dict:
    finished = [r for r in runs if r.finished]
    compared = [e for e in effects if e.diff is not None]
    tested = [e for e in effects if e.p is not None]
    beyond = [e for e in tested if e.beyond_noise]
    best = verdict(effects)
    entry: dict[str, Any] = {
        "variant": variant,
        "label": label,
        "seeds": len(finished),
        "runs_not_finished": len(runs) - len(finished),
        "metrics_compared": len(compared),
        "metrics_tested": len(tested),
        "metrics_beyond_noise": len(beyond),
        "beyond_noise": [e.metric for e in beyond],
        "p_values": bool(tested),
        "verdict": None,
    }
    if not finished:
        entry["text"] = f"{label}: no finished runs ({len(runs)} not finished); nothing to compare"
        return entry
    if tested:
        count = f"{len(beyond)} of {len(tested)} metrics differ beyond seed noise"
    elif min(len(finished), base_n) < 2:
        count = (f"no p-values ({len(finished)} seed(s) vs {base_n} baseline seed(s); a test needs 2+ per side); "
                 f"{len(compared)} metrics compared")  # fmt: skip
    else:
        count = f"no p-values (no metric varies across seeds); {len(compared)} metrics compared"
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
    return entry


def make_headline(
    runs: Sequence[Run],
    labels: Mapping[str, str],
    baseline: str,
    effects: Mapping[str, Sequence[Effect]],
    alpha: float,
) -> Headline:
    """One line per non-baseline variant, framed by the baseline and the run counts."""
    base_n = sum(1 for r in runs if r.variant == baseline and r.finished)
    entries = [_variant_entry(v, labels[v], [r for r in runs if r.variant == v], base_n, effects[v]) for v in effects]
    status = Counter(r.status for r in runs)
    counts = ", ".join(f"{n} {s}" for s, n in status.most_common())
    lines = [f"baseline: {labels[baseline]} ({base_n} finished seed(s))"]
    lines += [e["text"] for e in entries] or ["no other variant to compare with the baseline"]
    lines.append(f"runs: {counts} (only finished runs enter the statistics; BH alpha {alpha})")
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
