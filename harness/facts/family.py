"""What a model family can do, read from its config alone: the one place that tells InceptionV1 from other models.

Why (timm's ``feature_info``, torch-pruning's one graph): callers ask the model what it can do instead of asking
"is this InceptionV1?". Torch-free, because the readers of run records (harness-suggest, the oracle's and the
recipes' checks) decide from a config without building the network. What needs the built network (default probe
layers, the traced graph's widen targets) is :mod:`harness.models` and the run record's ``model.widen_targets``.

Three families:

- InceptionV1 (``plan``): channels and widen targets follow from its channel plan (:mod:`harness.facts.edits`);
  widen, prune (a negative widen) and insert blocks; built from scratch, its widen is part of the architecture
  (no unit is new); it is the default model, selected by no override.
- any other model (``graph``): widened on its traced torch.fx graph (:mod:`harness.models.graph_widen`), adding
  units only (``model.widen.<module path>=n``), no inserts; its widen targets and channels are known from a built
  network only (the run record's ``model.widen_targets``); widen always appends new units.
- no model config at all (``unknown``: summaries built in code, old records): read as the default model, with
  nothing to check or plan against.

Usage: ``family(run.model).check(run.model, {"mixed3b_5x5": -8}, [])`` -> None or the one-line reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.facts.edits import is_inception, plan_inception


@dataclass(frozen=True)
class Family:
    """Any traced model (``graph``); the subclasses below override what InceptionV1 does otherwise."""

    name: str = "graph"
    has_plan: bool = False  # layer and widen-target names are InceptionV1's plan (stem layers, mixed branches)
    prunes: bool = False  # a negative widen removes units
    inserts: bool = False  # model.insert adds blocks
    widen_is_architecture: bool = False  # built from scratch, the widen is the architecture (no unit is new)
    is_default: bool = False  # the default model: no override selects it

    def channels(
        self, model: Mapping[str, Any], widen: Mapping[str, int] | None = None, insert: Sequence[str] | None = None
    ) -> dict[str, int] | None:
        """Every layer/branch -> channels (with its own or the given edits); None when the config cannot tell."""
        return None

    def check(
        self,
        model: Mapping[str, Any],
        widen: Mapping[str, int],
        insert: Sequence[str],
        targets: Mapping[str, int] | None = None,
    ) -> str | None:
        """None when these edits apply to ``model``, else the one-line reason. Widen edits must add units to one of
        its widen ``targets`` (the run record's ``model.widen_targets``; unchecked when unknown)."""
        if insert:
            return "model.insert works on InceptionV1 only"
        for name, n in widen.items():
            if n < 0:
                return f"model.widen.{name}={n}: only adding units works on this model (graph_widen)"
            if targets and name not in targets:
                return f"model.widen.{name}: not a widen target of this model; valid: {', '.join(targets)}"
        return None


@dataclass(frozen=True)
class InceptionFamily(Family):
    """InceptionV1: everything follows from the channel plan."""

    name: str = "inception_v1"
    has_plan: bool = True
    prunes: bool = True
    inserts: bool = True
    widen_is_architecture: bool = True
    is_default: bool = True

    def channels(self, model, widen=None, insert=None):
        widen = dict(model.get("widen") or {}) if widen is None else dict(widen)
        insert = list(model.get("insert") or []) if insert is None else list(insert)
        width, last = model.get("width", 1.0), model.get("last_layer")
        return dict(plan_inception(width=width, widen=widen, insert=insert, last_layer=last).channels)

    def check(self, model, widen, insert, targets=None):
        from harness.facts.errors import ConfigError

        try:
            self.channels(model, widen, insert)
        except ConfigError as err:
            return str(err)
        return None


@dataclass(frozen=True)
class UnknownFamily(InceptionFamily):
    """No model config: read as the default model, with nothing to plan or check against."""

    name: str = "unknown"

    def channels(self, model, widen=None, insert=None):
        return None

    def check(self, model, widen, insert, targets=None):
        return None


GRAPH, INCEPTION, UNKNOWN = Family(), InceptionFamily(), UnknownFamily()


def family(model_cfg: Mapping[str, Any] | None) -> Family:
    """The family of a model config (a resolved ``cfg.model`` or a run record's ``config.model``)."""
    if not model_cfg or not model_cfg.get("_target_"):
        return UNKNOWN
    return INCEPTION if is_inception(model_cfg) else GRAPH
