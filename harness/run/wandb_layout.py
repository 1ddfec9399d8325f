"""What a harness run shows in wandb: its axes, name and group, and which probe scalars are charted.

Why one torch-free module: the logger (what is written), the dashboard (what is drawn) and the tests (what is
read back) must agree on every key; a dashboard that retypes `curves/{layer}/detectors` drifts from its
producer. Probe metric names come from :mod:`harness.facts.keys`.

Axes: training metrics are charted on `trainer/global_step`, probe metrics on `probe/round` (0, 1, ... one per
probing round, monotonic); `probe/epoch` says how many epochs the model had trained. History keeps only the
headline of each probe per layer (`HEADLINES`); every probe scalar is also in the `<probe>/per_layer` table,
per-unit rows in `<probe>/<table>` tables, and everything in the run record.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from harness.facts import keys as K

TRAIN_STEP = "trainer/global_step"
PROBE_ROUND, PROBE_EPOCH = "probe/round", "probe/epoch"
TRAIN_PREFIXES = ("train/", "val/", "test/", "lr-", "perf/", "epoch")  # charted on TRAIN_STEP
VAL_ACC, VAL_ACC_BEST, TRAIN_LOSS = K.VAL_ACC, K.VAL_ACC_BEST, K.TRAIN_LOSS  # charted on the dashboard
PER_LAYER = "per_layer"  # `<probe>/per_layer`: every scalar of the probe, one row per layer
PROBE_SECONDS = "perf/probe_seconds"  # a round's total; per probe: summary `perf/probes/<probe>_seconds`

# probe -> the per-layer metrics a person charts across variants (history keys `<probe>/<layer>/<metric>`).
# Curves keeps its random-init control beside the census; growth probes keep the metric that ranks candidates.
HEADLINES: dict[str, tuple[str, ...]] = {
    K.ACTIVATIONS: (K.DEAD_FRACTION,),
    K.CURVES: (K.DETECTORS, K.DETECTORS_RANDOM_INIT),
    K.DISSECT: (K.UNIQUE_CONCEPTS,),
    K.LINEAR: (K.linear_acc("class"),),
    K.CKA: (K.CKA_TO_REFERENCE,),
    K.LINEAGE: tuple(f"{K.ADDED}/{c}" for c in K.LINEAGE_CATEGORIES),
    "featvis": ("mean_final_activation",),
    "ablation": ("delta_acc",),
    **{probe: metrics[:1] for probe, metrics in K.GROWTH_SCORES.items()},
}
# probe -> per-unit table columns whose distribution is the point (logged as wandb.Histogram per layer);
# a `filter` column keeps only the rows where it is true (preferred orientation of curve detectors only).
HISTOGRAMS: dict[str, tuple[tuple[str, str | None], ...]] = {
    K.CURVES: ((K.PREFERRED_ORIENTATION, K.IS_CURVE_DETECTOR), ("selectivity", None)),
    K.ACTIVATIONS: (("mean", None),),
}
BOOKKEEPING = (K.FAILED, K.SKIPPED)  # kept in history: a failed probe must show on the chart


def split_key(key: str) -> tuple[str, str]:
    """`mixed3b/concept/curve` -> (`mixed3b`, `concept/curve`): a probe scalar's layer and metric."""
    layer, _, metric = key.partition("/")
    return layer, metric


def is_headline(probe: str, key: str) -> bool:
    """Whether `<probe>/<key>` stays a history scalar (a headline or a failed/skipped flag)."""
    if key in BOOKKEEPING:
        return True
    metric = split_key(key)[1]
    return any(metric == h or metric.endswith(f"/{h}") for h in HEADLINES.get(probe, ()))  # ablation: <group>/..


def headline_keys(probe: str, layers: Sequence[str]) -> list[str]:
    """The history keys of `probe`'s headlines over `layers` (what the dashboard charts)."""
    return [K.key(probe, layer, metric) for layer in layers for metric in HEADLINES.get(probe, ())]


def sweep_id(sweep_dir: str | Path) -> str:
    """A multirun's short id from its folder: `multirun/2026-12-06/04-30-00` -> `2026-12-06_04-30-00`."""
    parts = Path(sweep_dir).parts[-2:]
    return "_".join(parts)


def hydra_sweep() -> tuple[str | None, int | None]:
    """(sweep id, job number) of the Hydra multirun this process runs a job of; (None, None) outside one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None, None
    hc = HydraConfig.get()
    return sweep_id(hc.sweep.dir), hc.job.num


def run_name(variant: str, seed: int, job: int | None = None) -> str:
    """`<variant>-s<seed>`, plus `-j<job>` in a sweep (the job number tells repeats of one variant apart)."""
    name = f"{variant}-s{seed}"
    return f"{name}-j{job}" if job is not None else name


def run_group(variant: str, sweep: str | None = None) -> str:
    """The wandb group: the seeds of one variant in one sweep average together, and nothing else does."""
    return f"{sweep}/{variant}" if sweep else variant


def run_tags(tags: Sequence[str], choices: Mapping[str, str | None], recipes: Sequence[str], sweep: str | None) -> list:
    """The user's tags plus `experiment:<name>`, `recipe:<name>` and `sweep:<id>` (wandb tags: 64 chars at most)."""
    out = list(tags)
    if choices.get("experiment"):
        out.append(f"experiment:{choices['experiment']}")
    if choices.get("hparams_search"):
        out.append(f"hparams_search:{choices['hparams_search']}")
    out += [f"recipe:{r}" for r in recipes]
    if sweep:
        out.append(f"sweep:{sweep}")
    return [t[:64] for t in dict.fromkeys(out)]


def wandb_configured(env: Mapping[str, str] | None = None) -> bool:
    """True when wandb has credentials: WANDB_API_KEY, or a netrc entry for the wandb host."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(env.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False
