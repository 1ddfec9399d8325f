"""Which metrics an experiment tests: config facts, the headline family, and everything else (exploratory).

Why a family: Benjamini-Hochberg over every probe scalar (~200 per run) asks the best p of three seeds to reach
about 0.05/200, which it almost never does, so a typical experiment resolved nothing. The rule instead:

* **facts**: metrics the config decides (``model/params/*``: parameter counts) are reported, never tested;
* **family**: the headline metrics each probe declares (:data:`harness.facts.keys.HEADLINE`, a few per layer) at
  the layers the edit touches and their neighbours, plus the task metrics (test accuracy and loss); BH runs
  within this family only (10-30 tests for one widened branch);
* **exploratory**: every other metric gets its effect size and interval, labelled exploratory, never "beyond noise".

The touched layers are the widen branches and insert positions that differ between the two arms; a branch
(``mixed3b_5x5``) brings its layer (``mixed3b``), and a layer its neighbours in model order (``mixed3a``, ``mixed4a``).
Arms without an architecture difference (another learning rate, an A/A split) test the headline metrics at
every layer. ``--headline PATTERN`` adds metrics (fnmatch patterns) to the family.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatch

from harness.compare.load import Run
from harness.facts import keys as pk
from harness.facts.errors import ConfigError
from harness.facts.runs import as_number

FACTS = ("model/*",)  # parameter counts: follow from the config
TASK = ((pk.TEST_ACC, pk.TEST_LOSS), (pk.VAL_ACC, pk.VAL_LOSS))  # the first pair present is the task's


def is_fact(metric: str) -> bool:
    """Metrics the config determines (reported as facts, never tested)."""
    return any(fnmatch(metric, pattern) for pattern in FACTS)


def split_key(metric: str) -> tuple[str, str, str] | None:
    """``curves/mixed3b/detectors`` -> (probe, layer, metric name); None for keys without three parts."""
    parts = metric.split("/", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def is_headline(metric: str) -> bool:
    """A metric a probe declares as headline (whatever its layer)."""
    parts = split_key(metric)
    return parts is not None and parts[2] in pk.HEADLINE.get(parts[0], ())


def layer_order(runs: Iterable[Run]) -> list[str]:
    """Every layer and branch the runs' records list, in model order (first run that lists one wins)."""
    return list(dict.fromkeys(layer for run in runs for layer in run.channels))


def parent(layer: str, order: Sequence[str]) -> str:
    """The layer a branch belongs to (``mixed3b_5x5`` -> ``mixed3b``); a top-level layer is its own parent."""
    owners = [o for o in order if o != layer and layer.startswith(o + "_")]
    return max(owners, key=len) if owners else layer


def touched_layers(base_runs: Sequence[Run], variant_runs: Sequence[Run]) -> set[str]:
    """Widen branches and insert positions whose edit differs between the arms."""

    def edits(runs: Sequence[Run]) -> set[tuple[str, float | str]]:
        out: set[tuple[str, float | str]] = set()
        for run in runs:
            out |= {(str(k), as_number(v) or 0.0) for k, v in run.widen.items() if as_number(v)}
            out |= {(str(layer), "insert") for layer in run.inserts}
        return out

    return {layer for layer, _ in edits(base_runs) ^ edits(variant_runs)}


def family_layers(touched: set[str], order: Sequence[str]) -> set[str] | None:
    """Touched layers, their parents and the parents' neighbours in model order; None (every layer) if none."""
    if not touched:
        return None
    top = [layer for layer in order if parent(layer, order) == layer]
    out = set(touched)
    for layer in touched:
        owner = parent(layer, order)
        out.add(owner)
        if owner in top:
            i = top.index(owner)
            out.update(top[max(i - 1, 0) : i + 2])
    return out


def task_metrics(metrics: Iterable[str]) -> list[str]:
    """test/acc and test/loss when the runs were tested, else val/acc and val/loss."""
    present = set(metrics)
    for pair in TASK:
        if any(m in present for m in pair):
            return [m for m in pair if m in present]
    return []


def check_headline_keys(patterns: Sequence[str], metrics: Iterable[str]) -> None:
    """Each user headline key (fnmatch pattern) must name at least one metric of the runs; else a ConfigError."""
    names = sorted(set(metrics))
    for pattern in patterns:
        if not any(fnmatch(m, pattern) for m in names):
            near = [m for m in names if is_headline(m)][:6] or names[:6]
            raise ConfigError(f"headline key {pattern!r} names no probe metric of these runs; e.g. {', '.join(near)}")


def family(
    metrics: Iterable[str],
    base_runs: Sequence[Run],
    variant_runs: Sequence[Run],
    extra: Sequence[str] = (),
    touched: set[str] | None = None,
) -> set[str]:
    """The metrics BH is applied to for this pair of arms (see the module docstring); `touched` overrides the
    layers the edit touches (an A/A check of one config asked for the family of a planned edit)."""
    metrics = list(metrics)
    touched = touched_layers(base_runs, variant_runs) if touched is None else touched
    layers = family_layers(touched, layer_order([*base_runs, *variant_runs]))
    chosen = set(task_metrics(metrics))
    for m in metrics:
        parts = split_key(m)
        if is_headline(m) and parts is not None and (layers is None or parts[1] in layers):
            chosen.add(m)
        if any(fnmatch(m, pattern) for pattern in extra):
            chosen.add(m)
    return {m for m in chosen if not is_fact(m)}
