"""Score a signal against the oracle: Spearman rho (bootstrap CI), top-1 / top-3 hit, regret.

Why ties are handled in closed form: most rules fire on one or two candidates and are silent (0) on the
rest, so their rankings are mostly ties. A signal's "first choice" among tied candidates is taken as a
uniformly random pick, so top-k is the probability that the oracle's best candidate is among its first k
picks and regret the expected regret of its first pick: a constant signal then scores exactly what random
guessing scores (top1 = 1/n), never more. rho of a constant signal is undefined: nan, reported as such.

Bootstrap (why both levels): the gains are noisy (finite seeds) and the candidates are a sample of the
edits one could make, so each replicate resamples candidates and, within each drawn candidate, its paired
seed differences; the CI is the 2.5/97.5 percentile of the replicates' rho (nan if most are undefined).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

BOOTSTRAP_REPS = 1000
SIGNALS_COLUMNS = ("signal", "spearman", "spearman_low", "spearman_high", "top1", "top3", "regret", "n_candidates",
                   "tier")  # fmt: skip


@dataclass(frozen=True)
class SignalScore:
    """One row of signals.csv."""

    signal: str
    spearman: float
    spearman_low: float
    spearman_high: float
    top1: float
    top3: float
    regret: float
    n_candidates: int
    tier: int = 1  # which oracle the signal is scored against: 0 (deterministic, tier0.py) or 1 (fine-tune)

    def as_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho with average ranks for ties; nan when either side is constant or has < 3 values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def top_k(scores: np.ndarray, gains: np.ndarray, k: int) -> float:
    """P(the oracle's best candidate is among the signal's first k picks), ties broken uniformly at random."""
    best = int(np.argmax(gains))
    above = int(np.sum(scores > scores[best]))
    tied = int(np.sum(scores == scores[best]))
    if above >= k:
        return 0.0
    return 1.0 if above + tied <= k else (k - above) / tied


def regret(scores: np.ndarray, gains: np.ndarray) -> float:
    """Best oracle gain minus the (expected) gain of the signal's first choice."""
    first = scores == scores.max()
    return float(gains.max() - gains[first].mean())


def bootstrap_ci(
    scores: np.ndarray, diffs: list[np.ndarray], reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of rho, resampling candidates and, within each, its paired seed differences."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    found = []
    for _ in range(reps):
        idx = rng.integers(n, size=n)
        means = np.array([diffs[i][rng.integers(len(diffs[i]), size=len(diffs[i]))].mean() for i in idx])
        rho = spearman(scores[idx], means)
        if math.isfinite(rho):
            found.append(rho)
    if len(found) < reps / 2:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(found, [tail, 100 - tail])
    return float(low), float(high)


def score_signal(
    name: str,
    scores: Mapping[str, float],
    diffs: Mapping[str, np.ndarray],
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
    tier: int = 1,
) -> SignalScore:
    """Score one signal over the candidates that have both a finite score and oracle differences."""
    names = [c for c in diffs if c in scores and math.isfinite(scores[c]) and len(diffs[c])]
    s = np.array([scores[c] for c in names], dtype=float)
    d = [np.asarray(diffs[c], dtype=float) for c in names]
    g = np.array([x.mean() for x in d])
    if len(names) == 0:
        return SignalScore(name, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, tier)
    low, high = bootstrap_ci(s, d, reps, seed) if len(names) >= 3 else (math.nan, math.nan)
    rho = spearman(s, g)
    return SignalScore(name, rho, low, high, top_k(s, g, 1), top_k(s, g, 3), regret(s, g), len(names), tier)
