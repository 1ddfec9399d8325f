"""Names a run's variant: its configuration minus the seed.

Why from the overrides: every seed of `+model.widen.mixed3b_5x5=32` must share one wandb group and
one comparison key, whatever order the user typed the overrides in; a zero-width widen is the base
architecture, so `+model.widen.mixed3b_5x5=0` and no override name the same variant.

In a sweep, settings shared by every job (`data.train_size=256 trainer.max_epochs=2`) are the sweep's
budget, not a variant: they are left out of the name unless they edit the model, so
`harness-train -m +model.widen.mixed3b_5x5=0,8 seed=0,1 trainer.max_epochs=2` yields the variants
`base` and `model.widen.mixed3b_5x5=8`. The full config is always in the run record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Overrides that change where, how or what is logged or measured, not what is trained.
_IGNORED = re.compile(r"^(seed|variant|tags|logger|paths|hydra|callbacks|probes|probing|test|optimized_metric|"
                      r"trainer\.(accelerator|devices|strategy|enable_progress_bar|num_nodes))(\.|=|$)")
_ZERO_WIDEN = re.compile(r"^model\.widen\.[A-Za-z0-9_]+=0$")


def variant_name(overrides: Iterable[str], shared: Iterable[str] = ()) -> str:
    """`["+model.widen.mixed3b_5x5=32", "seed=1"]` -> `"model.widen.mixed3b_5x5=32"`; nothing -> `"base"`.

    `shared`: keys every job of the sweep sets alike (see `shared_sweep_keys`), left out.
    """
    drop = {key.lstrip("+~") for key in shared}
    kept = []
    for override in overrides:
        item = override.lstrip("+~")
        if _IGNORED.match(item) or _ZERO_WIDEN.match(item) or item.split("=", 1)[0] in drop:
            continue
        kept.append(item)
    return ",".join(sorted(kept)) or "base"


def shared_sweep_keys(sweep_dir: str | Path) -> list[str]:
    """Keys a multirun sets to one value for every job, except those that edit the model.

    Read from the `multirun.yaml` Hydra saves in the sweep folder before it launches any job;
    empty when there is none (a launcher that does not write it just gets longer names).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return []
    task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task", default=None) or []
    shared = []
    for override in OverridesParser.create().parse_overrides(list(task)):
        key = override.get_key_element().lstrip("+~")
        if override.is_sweep_override() or key == "model" or key.startswith("model."):
            continue
        shared.append(key)
    return shared
