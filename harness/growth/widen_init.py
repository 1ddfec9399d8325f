"""The data-driven widen inits of a run: ``model.widen_init=gradmax|tiny`` on ``model.widen_batches`` training batches.

Why after the build and not in it: ``zero`` and ``net2net`` need nothing but weights, so the model pipeline
(:mod:`harness.models.build`, :mod:`harness.models.graph_widen`) applies them; GradMax and TINY need loss
gradients, so the pipeline builds their units like ``zero`` (fresh fan-in, zero fan-out) and the entry point
calls :func:`init_from_config` once the data exists. Models know nothing of data; this module joins the two.

The batches are the first ``widen_batches`` of the training loader, drawn with the global RNG forked (the run's
own training order is the one it would have had with ``zero``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from harness.facts.errors import ConfigError
from harness.facts.family import family
from harness.facts.overrides import flatten_widen
from harness.growth.gradmax_init import gradmax_init
from harness.growth.new_units import Batch, new_units
from harness.growth.tiny_init import tiny_init
from harness.models.surgery import added_units

DATA_INITS: tuple[str, ...] = ("gradmax", "tiny")
WIDEN_BATCHES = 4  # default model.widen_batches: enough for B's top singular vectors at k <= a few dozen


def init_units(
    net: nn.Module, added: Mapping[str, Sequence[int]], batches: Sequence[Batch], init: str, image_size: int = 64,
    amplitude_batches: Sequence[Batch] | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Initialise the ``added`` units (target -> unit indices) of ``net`` in place with ``init`` (gradmax | tiny).

    Usage: ``init_units(wide, {"layer2.0.conv1": [128, 129]}, [(x, y)], "gradmax", image_size=32)``;
    ``amplitude_batches``: TINY's line search runs on these instead (held out from its directions' batches).
    """
    if init not in DATA_INITS:
        raise ConfigError(f"init_units serves the data-driven inits; valid: {', '.join(DATA_INITS)}, got {init!r}")
    found = new_units(net, added, image_size, init)
    if not found:
        return {}
    if init == "gradmax":
        return gradmax_init(net, batches, found)
    return tiny_init(net, batches, found, amplitude_batches)


def fixed_batches(datamodule: Any, n: int) -> list[Batch]:
    """The first ``n`` training batches (images, labels), the global RNG left as it was."""
    with torch.random.fork_rng(devices=[]):
        datamodule.setup("fit")
        return [(b[0], b[1]) for b in itertools.islice(datamodule.train_dataloader(), int(n))]


def added_by_config(model_cfg: Mapping[str, Any], net: nn.Module) -> dict[str, list[int]]:
    """The units a config's widen edits appended to loaded weights (InceptionV1: ``weights``/``init_from``; any
    other model: always, ``model.widen`` appends zero-fan-out units to whatever it built); {} when none."""
    widen = flatten_widen(model_cfg.get("widen"))
    loaded = model_cfg.get("weights") or model_cfg.get("init_from")
    if family(model_cfg).widen_is_architecture and not loaded:
        return {}  # built from scratch: its widen is part of the architecture, no unit is new
    return added_units(net, {k: v for k, v in widen.items() if v > 0})


def init_from_config(model_cfg: Mapping[str, Any], net: nn.Module, datamodule: Any) -> dict[str, Any] | None:
    """Apply ``model.widen_init=gradmax|tiny`` to a freshly built run network; the record entry, or None."""
    init = model_cfg.get("widen_init", "zero")
    if init not in DATA_INITS:
        return None
    added = added_by_config(model_cfg, net)
    if not added:
        return None
    new_units(net, added, int(datamodule.image_size), str(init))  # a target it cannot serve fails before the data
    batches = fixed_batches(datamodule, int(model_cfg.get("widen_batches") or WIDEN_BATCHES))
    targets = init_units(net, added, batches, str(init), int(datamodule.image_size))
    return {"init": init, "batches": len(batches), "images": sum(len(y) for _, y in batches), "targets": targets}
