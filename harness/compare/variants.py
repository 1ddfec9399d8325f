"""Short display labels for variants, and the choice of the baseline variant.

Why labels: a hand-launched multirun names each variant by all its overrides
("data.batch_size=32,...,model.widen.mixed3b_5x5=8,trainer.max_epochs=2"); only the items that differ
between variants say what was compared. The full string stays in the CSV files.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.compare.load import Run, ordered_variants
from harness.facts.errors import ConfigError

BASE = "base"
_OPEN, _CLOSE = "[({", "])}"


def split_overrides(variant: str) -> list[str]:
    """Split on top-level commas only: `probes=[curves,cka]` is one item."""
    items, depth, quote, current = [], 0, "", []
    for char in variant:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item for item in items if item]


def variant_labels(variants: Sequence[str]) -> dict[str, str]:
    """variant -> label without the `key=value` items shared by all variants (unique; else the full string)."""
    distinct = list(dict.fromkeys(variants))
    if len(distinct) < 2:
        return {v: v for v in distinct}
    parts = {v: split_overrides(v) for v in distinct}
    shared = set.intersection(*(set(p) for p in parts.values()))
    labels = {v: ",".join(p for p in parts[v] if p not in shared or "=" not in p) or BASE for v in distinct}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {v: (label if counts[label] == 1 else v) for v, label in labels.items()}


def _listing(variants: Sequence[str], labels: dict[str, str]) -> str:
    return ", ".join(repr(labels.get(v, v)) for v in variants)


def choose_baseline(runs: Sequence[Run], labels: dict[str, str], requested: str | None = None) -> str:
    """The baseline variant: `requested` (full string or label), else the only variant, else the only unedited
    variant (widen all 0, no insert), else the one named 'base'."""
    variants = [v for v in ordered_variants(runs) if v != "?"]  # '?' = unreadable record
    if requested is not None:
        for v in variants:
            if requested in (v, labels.get(v)):
                return v
        raise ConfigError(f"unknown --baseline {requested!r}; available variants: {_listing(variants, labels)}")
    if len(variants) == 1:
        return variants[0]  # nothing to compare with, but the runs are still listed
    plain = [v for v in variants if all(r.plain for r in runs if r.variant == v)]
    if len(plain) == 1:
        return plain[0]
    for v in variants:
        if BASE in (v, labels.get(v)):
            return v
    why = "several variants are" if plain else "no variant is"
    raise ConfigError(
        f"cannot choose a baseline: {why} free of widen/insert edits and none is named 'base'; "
        f"pass --baseline with one of: {_listing(variants, labels)}"
    )
