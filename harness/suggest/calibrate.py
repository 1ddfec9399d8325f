"""Calibrated rule weights: rank suggestions by what an oracle measured, not by equal votes.

Why from signals.csv: harness-oracle scores every harness-suggest rule as a "where to grow" signal by its
Spearman rho with the measured gains. A rule whose first choices paid off should count more; one that
ranked candidates no better than chance (rho <= 0) should not steer at all. So a rule's weight is
``max(rho, 0)``; a rule the oracle could not score (absent, or rho undefined because it was silent
everywhere) keeps its configured weight, and the caller is told which. A YAML/JSON file mapping rule ->
weight is read as is.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from harness.facts.errors import ConfigError


def weights_from_signals(path: str | Path) -> tuple[dict[str, float], list[str]]:
    """(rule -> weight, notes) from an oracle's signals.csv, for the rules of harness-suggest it scored."""
    from harness.suggest.rules import RULES

    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"--weights {path}: no such file (an oracle's signals.csv, or a YAML/JSON rule -> weight map)"
        )
    if file.suffix in (".yaml", ".yml", ".json"):
        import yaml

        raw = yaml.safe_load(file.read_text()) if file.suffix != ".json" else json.loads(file.read_text())
        raw = raw.get("weights", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, dict) or not all(isinstance(v, int | float) for v in raw.values()):
            raise ConfigError(f"--weights {path}: expected a mapping rule -> number")
        unknown = sorted(set(raw) - set(RULES))
        if unknown:
            raise ConfigError(f"--weights {path}: unknown rule(s) {', '.join(unknown)}; valid: {', '.join(RULES)}")
        return {k: float(v) for k, v in raw.items()}, []
    with open(file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "signal" not in rows[0] or "spearman" not in rows[0]:
        raise ConfigError(f"--weights {path}: not a signals.csv (needs columns signal, spearman)")
    weights, notes = {}, []
    for row in rows:
        if row["signal"] not in RULES:
            continue
        try:
            rho = float(row["spearman"])
        except ValueError:
            rho = math.nan
        if math.isfinite(rho):
            weights[row["signal"]] = round(max(rho, 0.0), 4)
        else:
            notes.append(f"{row['signal']}: rho undefined in {file} (silent on every candidate): weight unchanged")
    notes += [f"{r}: not scored in {file}: weight unchanged" for r in RULES if r not in weights and
              not any(n.startswith(f"{r}:") for n in notes)]  # fmt: skip
    return weights, notes
