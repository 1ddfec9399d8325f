"""Names a run's variant: its configuration minus the seed.

Why from the overrides: every seed of `+model.widen.mixed3b_5x5=32` must share one wandb group and
one comparison key, whatever order the user typed the overrides in; a zero-width widen is the base
architecture, so `+model.widen.mixed3b_5x5=0` and no override name the same variant.

In a sweep, settings shared by every job (`data.train_size=256 trainer.max_epochs=2`) are the sweep's
budget, not a variant: they are left out of the name unless they edit the model, so
`harness-train -m +model.widen.mixed3b_5x5=0,8 seed=0,1 trainer.max_epochs=2` yields the variants
`base` and `model.widen.mixed3b_5x5=8`. The full config is always in the run record.

A single run (no sweep to tell budget from variable) is named by what changes the model or the task only:
model edits and model/data choices, data content (`data.classes`), recipe keys (`curve_widen`,
`random_tweak`, `experiment`), and the training recipe (`module.*`, `trainer.precision`, ...). Its budget
(`BUDGET`: data sizes, batch size, epochs and step limits) and its logging and probe settings name nothing, so
`harness-train data.train_size=1024 trainer.max_epochs=1 +model.widen.mixed3b_5x5=16` is the variant
`model.widen.mixed3b_5x5=16`, and single runs of one edit at different budgets compare as seeds of one variant.
A model of your own (`model=custom model._target_=mynet.MyNet`) is named by its class: `MyNet,model.widen.body.4=8`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Overrides that change where, how or what is logged or measured, not what is trained.
_IGNORED = re.compile(r"^(seed|variant|tags|logger|paths|hydra|callbacks|probes|probing|test|optimized_metric|verbose|"
                      r"trainer\.(accelerator|devices|strategy|enable_progress_bar|num_nodes))(\.|=|$)")  # fmt: skip
# A single run's budget: how long and on how much data it trains, not what it trains (see the module docstring).
BUDGET = re.compile(r"^(debug|resume|data\.(train_size|val_size|test_size|batch_size|num_workers|pin_memory|"
                    r"persistent_workers|prefetch_factor|cache\w*)|trainer\.(max_epochs|min_epochs|max_steps|"
                    r"min_steps|max_time|limit_\w+|log_every_n_steps|check_val_every_n_epoch|val_check_interval|"
                    r"num_sanity_val_steps|enable_\w+|fast_dev_run|profiler|default_root_dir|deterministic|"
                    r"benchmark))(\.|=|$)")  # fmt: skip
_ZERO_WIDEN = re.compile(r"^model\.widen\.[A-Za-z0-9_]+=0$")
# `model._target_=pkg.module.MyNet` (model=custom): the class names the model, and `model=custom` adds nothing.
_TARGET = re.compile(r"^model\._target_=(?:.*\.)?(?P<cls>[^.]+)$")


def variant_name(overrides: Iterable[str], shared: Iterable[str] = (), single: bool = False) -> str:
    """`["+model.widen.mixed3b_5x5=32", "seed=1"]` -> `"model.widen.mixed3b_5x5=32"`; nothing -> `"base"`.

    `shared`: keys every job of the sweep sets alike (see `shared_sweep_keys`), left out.
    `single`: a single run, whose budget keys (`BUDGET`) are left out too.
    """
    drop = {key.lstrip("+~") for key in shared}
    overrides = list(overrides)
    own_class = any(_TARGET.match(o.lstrip("+~")) for o in overrides)
    kept = []
    for override in overrides:
        item = override.lstrip("+~")
        if own_class and item == "model=custom":
            continue
        if (target := _TARGET.match(item)) and item.split("=", 1)[0] not in drop:
            kept.append(target["cls"])  # "MyNet,model.widen.body.4=8", not "model._target_=mynet.MyNet,..."
            continue
        if _IGNORED.match(item) or _ZERO_WIDEN.match(item) or item.split("=", 1)[0] in drop:
            continue
        if single and BUDGET.match(item):
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
