"""Architecture edits as Hydra overrides: one edit, how it composes with a run's edits, and whether it is valid.

Why a module of its own: the rules only decide *what* to change; turning that into strings that
`harness-train` accepts (``+model.widen.mixed3b_5x5=16``, ``model.insert=[mixed3b]``), composing it with
the edits a run already has, and checking the result against the model's channel plan is the same
for every rule and for the guided-vs-random experiment.

Composition: a widen edit adds ``amount`` channels to the branch's current extra width (negative =
prune); an insert appends one more block after a mixed layer. The *incremental* override names the
change alone; the *next-run* set is every widen/insert of the run plus this change, ready to paste.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.facts.family import family

WIDEN_PREFIX = "+model.widen."
INSERT_KEY = "model.insert"


@dataclass(frozen=True)
class Edit:
    """One architecture change. Usage: ``Edit("widen", "mixed3b_5x5", 16)``, ``Edit("insert", "mixed3b")``"""

    kind: str  # "widen" (amount channels, negative = prune) or "insert" (one block after a mixed layer)
    target: str  # branch / stem layer for widen, mixed layer for insert
    amount: int = 1

    def incremental(self) -> str:
        """The change alone, as an override (for an insert: this one block)."""
        if self.kind == "widen":
            return f"{WIDEN_PREFIX}{self.target}={self.amount}"
        return f"{INSERT_KEY}=[{self.target}]"


def flatten_widen(widen: Mapping[str, Any] | None, prefix: str = "") -> dict[str, int]:
    """``{layer2: {'0': {conv1: 8}}}`` (how Hydra reads ``+model.widen.layer2.0.conv1=8``) -> ``{'layer2.0.conv1': 8}``.

    Flat keys (``{'layer2.0.conv1': 8}``, from Python or a recipe) pass unchanged.
    """
    flat: dict[str, int] = {}
    for key, value in (widen or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_widen(value, f"{name}."))
        else:
            flat[name] = int(value)
    return flat


def base_layer(name: str) -> str:
    """``mixed3b_ins1`` -> ``mixed3b``: inserts are requested after the table layer they copy."""
    return name.split("_ins", 1)[0]


def compose(widen: Mapping[str, int], insert: Sequence[str], edit: Edit) -> tuple[dict[str, int], list[str]]:
    """The run's edits plus ``edit``: (widen, insert) for the next run; widen entries that reach 0 are dropped."""
    new_widen, new_insert = {k: int(v) for k, v in widen.items() if int(v) != 0}, list(insert)
    if edit.kind == "widen":
        total = new_widen.get(edit.target, 0) + int(edit.amount)
        new_widen.pop(edit.target, None)
        if total != 0:
            new_widen[edit.target] = total
    elif edit.kind == "insert":
        new_insert.append(base_layer(edit.target))
    else:
        raise ValueError(f"unknown edit kind {edit.kind!r}; valid: widen, insert")
    return new_widen, new_insert


def as_overrides(widen: Mapping[str, int], insert: Sequence[str]) -> list[str]:
    """Every edit as harness-train overrides, widen keys sorted, then the insert list (if any)."""
    out = [f"{WIDEN_PREFIX}{k}={int(v)}" for k, v in sorted(widen.items()) if int(v) != 0]
    if insert:
        out.append(f"{INSERT_KEY}=[{','.join(insert)}]")
    return out


def check(
    model: Mapping[str, Any], widen: Mapping[str, int], insert: Sequence[str], targets: Mapping[str, int] | None = None
) -> str | None:
    """None when the model's family accepts these edits, else the one-line reason (e.g. pruning unsupported).

    InceptionV1: its channel plan decides. Any other model: widen edits must add units to one of its widen
    ``targets`` (the run record's ``model.widen_targets``; unchecked when unknown), and ``model.insert`` is
    InceptionV1's. No model config: nothing to check against (:mod:`harness.facts.family`).
    """
    return family(model).check(model, widen, insert, targets)


def channels(model: Mapping[str, Any], widen: Mapping[str, int] | None = None, insert: Sequence[str] | None = None):
    """Every layer/branch -> channels of an InceptionV1 config (with its own or the given edits); None otherwise."""
    return family(model).channels(model, widen, insert)


def _value(v: Any) -> str | None:
    """A config value as a Hydra override value (None: not expressible on one command line, e.g. a mapping)."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return v if re.fullmatch(r"[\w./:-]+", v) else "'" + v.replace("'", "\\'") + "'"
    if isinstance(v, list | tuple) and all(not isinstance(x, Mapping | list | tuple) for x in v):
        items = [_value(x) for x in v]
        return "[" + ",".join(items) + "]" if None not in items else None
    return None


def model_overrides(model: Mapping[str, Any]) -> list[str]:
    """The overrides that select a non-Inception run's model, to go before its edits on harness-train's command line:
    ``model=<option>`` of ``conf/model`` with its ``_target_`` (else ``model=custom model._target_=...``), then each
    key whose value differs from that file's (``+model.<key>=...`` for a key it lacks) and the architecture's
    ``name``. ``[]`` for InceptionV1 (the default model: its edits alone are the command, as ever).

    Usage: ``model_overrides({"_target_": "harness.models.torchvision_model", "name": "vgg11_bn", ...})`` ->
    ``["model=torchvision", "model.name=vgg11_bn"]``
    """
    from omegaconf import OmegaConf

    from harness.facts.conf_dir import CONF_DIR

    if family(model).is_default:
        return []
    options = {
        p.stem: OmegaConf.to_container(OmegaConf.load(p)) for p in sorted(Path(CONF_DIR, "model").glob("*.yaml"))
    }
    name = next((k for k, o in options.items() if o.get("_target_") == model["_target_"]), "custom")
    base = options.get(name, {})
    out = [f"model={name}"]
    for key, value in model.items():
        same = key in base and base[key] == value and key != "name"  # the architecture's name is always shown
        if key in ("widen", "insert") or same or key == "num_classes" and value is None:
            continue
        shown = _value(value)
        if shown is not None:
            out.append(f"{'' if key in base else '+'}model.{key}={shown}")
    return out
