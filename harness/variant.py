"""Names a run's variant: its configuration minus the seed.

Why from the overrides: every seed of `+model.widen.mixed3b_5x5=32` must share one wandb group and
one comparison key, whatever order the user typed the overrides in; a zero-width widen is the base
architecture, so `+model.widen.mixed3b_5x5=0` and no override name the same variant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Overrides that change where, how or what is logged or measured, not what is trained.
_IGNORED = re.compile(r"^(seed|variant|tags|logger|paths|hydra|callbacks|probes|probing|test|optimized_metric|"
                      r"trainer\.(accelerator|devices|strategy|enable_progress_bar|num_nodes))(\.|=|$)")
_ZERO_WIDEN = re.compile(r"^model\.widen\.[A-Za-z0-9_]+=0$")


def variant_name(overrides: Iterable[str]) -> str:
    """`["+model.widen.mixed3b_5x5=32", "seed=1"]` -> `"model.widen.mixed3b_5x5=32"`; nothing -> `"base"`."""
    kept = []
    for override in overrides:
        item = override.lstrip("+~")
        if _IGNORED.match(item) or _ZERO_WIDEN.match(item):
            continue
        kept.append(item)
    return ",".join(sorted(kept)) or "base"
