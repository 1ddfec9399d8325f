"""The one way to build a model: config -> architecture -> construct -> load weights -> edit -> freeze.

Why one pipeline: training, probing, checkpoint loading, random-init controls and the growth workflow
all turn a model config into a network, and several of them start from trained weights
(``model.weights``: Lucid's InceptionV1; ``model.init_from``: a harness-train checkpoint) that are then
widened without changing their function and partly frozen. Each step is its own function here, and
each lower module does one thing: :class:`~harness.models.inception_v1.InceptionV1` only builds,
:mod:`~harness.models.pretrained` only reads files, :mod:`~harness.models.surgery` only edits weights,
:mod:`~harness.models.freeze` only freezes.

1. *architecture* (:func:`architecture`): the loading keys are dropped; a loaded network fixes the
   architecture (:func:`resolve_source`) and ``widen`` is added on top of the loaded network's own.
2. *construct*: ``InceptionV1(**architecture)`` (or any ``_target_``), random init.
3. *load weights*, 4. *edit*: the loaded network's weights are copied in through per-layer unit maps
   (:func:`initialise_from`, :func:`harness.models.surgery.transfer`), 5. *freeze* (``freeze_old``).

Checkpoints describe themselves: the training module stores :func:`model_architecture` (plus the data
config, classes, variant and seed) under ``CHECKPOINT_KEY``, as nanoGPT stores ``model_args``, so
:func:`load_net` rebuilds a checkpoint copied anywhere. Older checkpoints without it are rebuilt from
their run's ``record.json`` (the checkpoint's folder or its parent).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from harness.facts.edits import INCEPTION_TARGET, INCEPTION_TARGETS, add_widen, check_widen, is_inception
from harness.facts.errors import ConfigError
from harness.facts.runs import RECORD_NAME, load_record, record_of_checkpoint
from harness.models.custom import check_growth_keys, instantiate_model
from harness.models.freeze import freeze_old as freeze_units
from harness.models.inception_v1 import InceptionV1, _check_args
from harness.models.pretrained import load_lucid, load_torch_file, state_dict_of
from harness.models.surgery import WIDEN_INITS, added_units, transfer, unit_maps

# Keys that say where weights come from and how edits treat them (not architecture).
LOADING_KEYS: tuple[str, ...] = ("weights", "init_from", "widen_init", "widen_noise", "freeze_old", "train_also",
                                  "widen_batches", "new_lr_scale", "carry_optimizer")
# Architecture keys a loaded InceptionV1 fixes; `widen` is added on top of the loaded network's own.
ARCH_KEYS: tuple[str, ...] = ("width", "batch_norm", "lrn", "insert", "last_layer", "input_transform")
LUCID = {"width": 1.0, "batch_norm": False, "lrn": True, "insert": [], "widen": {}}
# Where a checkpoint written by harness-train keeps what rebuilds it (see harness.run.module.ClassifierModule).
CHECKPOINT_KEY = "harness"
# InceptionV1's constructor defaults: what an architecture key left out of a config means.
_DEFAULTS = {k: p.default for k, p in inspect.signature(InceptionV1).parameters.items() if p.default is not p.empty}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


@dataclass
class Source:
    """Where an InceptionV1's starting weights come from, and the architecture they fix.

    Usage: ``src = resolve_source(arch, weights="inception5h.pth"); net, head_trained = src.load()``
    """

    arch: dict[str, Any]  # ARCH_KEYS plus the loaded network's own `widen`
    weights: str | None = None
    init_from: str | None = None
    classes: list[str] = field(default_factory=list)

    def load(self) -> tuple[nn.Module, bool]:
        """(network with the loaded weights, whether its classifier head was trained)."""
        if self.weights:
            net = load_lucid(self.weights, self.arch["last_layer"], self.arch["input_transform"])
            return net, self.arch["last_layer"] is None
        return load_net(self.init_from)[0], True


def _mismatch(given: Mapping[str, Any], fixed: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    def same(a: Any, b: Any) -> bool:
        a, b = _plain(a), _plain(b)
        return (list(a or []) == list(b or [])) if isinstance(a, list | tuple) or isinstance(b, list) else a == b

    return [f"{k}={_plain(given[k])!r} (loaded: {_plain(fixed[k])!r})" for k in keys if not same(given[k], fixed[k])]


def resolve_source(
    arch: Mapping[str, Any], weights: str | None = None, init_from: str | None = None, seen: tuple[str, ...] = ()
) -> Source:
    """Check that ``arch`` (the config's ARCH_KEYS) fits the weights and return the architecture they fix.

    Lucid's weights fit width 1, no batch norm, LRN and no inserted blocks (``last_layer`` may truncate);
    a checkpoint fits its own run's architecture. ``input_transform`` null = the loaded network's.
    """
    if weights and init_from:
        raise ConfigError("set model.weights (a Lucid state dict) or model.init_from (a checkpoint), not both")
    given = {k: _plain(arch.get(k)) for k in ARCH_KEYS}
    if weights:
        fixed = {**LUCID, "last_layer": given["last_layer"], "input_transform": given["input_transform"] or "lucid"}
        bad = _mismatch(given, fixed, ("width", "batch_norm", "lrn", "insert"))
        if bad:
            raise ConfigError(f"model.weights holds Lucid's InceptionV1, which does not fit {', '.join(bad)}: "
                              f"use model=inception_v1")  # fmt: skip
        return Source(arch=fixed, weights=str(weights))
    where = str(Path(str(init_from)).resolve())
    if where in seen:
        raise ConfigError(f"model.init_from chain loops: {' -> '.join([*seen, where])}")
    record = run_of(init_from)
    model_cfg = record.get("architecture") or architecture(record["config"]["model"], seen=(*seen, where))
    if not is_inception(model_cfg):
        raise ConfigError(f"model.init_from={init_from} is a {model_cfg.get('_target_')} run; widen and freeze "
                          f"need an InceptionV1 checkpoint")  # fmt: skip
    fixed = {k: model_cfg.get(k) for k in ARCH_KEYS}
    fixed["input_transform"] = fixed["input_transform"] or "none"
    fixed["widen"] = check_widen(model_cfg.get("widen"), fixed["insert"], fixed["last_layer"])
    bad = _mismatch(given, fixed, ("width", "batch_norm", "lrn", "insert", "last_layer"))
    if given["input_transform"] is not None:
        bad += _mismatch(given, fixed, ("input_transform",))
    if bad:
        raise ConfigError(f"model.init_from={init_from} was trained with another architecture: {', '.join(bad)}; "
                          f"set these to the checkpoint's values")  # fmt: skip
    return Source(arch=fixed, init_from=str(init_from), classes=list(record.get("classes") or []))


def architecture(model_cfg: Mapping[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A model config that builds the same network with nothing loaded (random init): loading keys dropped,
    ``init_from`` resolved to the checkpoint's architecture with ``widen`` added on top.

    Usage: ``build_model(architecture(record["config"]["model"]), num_classes=8)``
    """
    cfg = dict(_plain(model_cfg))
    loading = {k: cfg.pop(k, None) for k in LOADING_KEYS}
    if not is_inception(cfg) or not (loading["weights"] or loading["init_from"]):
        return cfg
    source = resolve_source(cfg, weights=loading["weights"], init_from=loading["init_from"], seen=seen)
    cfg.update({k: source.arch[k] for k in ARCH_KEYS})
    edits = check_widen(cfg.get("widen"), source.arch["insert"], source.arch["last_layer"])
    cfg["widen"] = add_widen(source.arch["widen"], edits)
    return cfg


def model_architecture(model_cfg: Mapping[str, Any], num_classes: int) -> dict[str, Any]:
    """:func:`architecture` with ``num_classes`` filled in: what a checkpoint stores to rebuild its network."""
    arch = architecture(model_cfg)
    if arch.get("num_classes") is None:
        arch["num_classes"] = int(num_classes)
    return arch


def initialise_from(
    net: InceptionV1,
    source: Source,
    widen: Mapping[str, int],
    widen_init: str = "zero",
    widen_noise: float = 0.0,
    freeze_old: bool = False,
    train_also: Sequence[str] | None = None,
) -> None:
    """Load, edit, freeze: fill ``net`` (built with the final architecture) from ``source``, in place."""
    if widen_init not in WIDEN_INITS:
        raise ConfigError(f"unknown model.widen_init {widen_init!r}; valid: {', '.join(WIDEN_INITS)}")
    if isinstance(widen_noise, bool) or not isinstance(widen_noise, int | float) or widen_noise < 0:
        raise ConfigError(f"model.widen_noise must be a number >= 0, got {widen_noise!r}")
    if train_also and not freeze_old:
        raise ConfigError("model.train_also lists what trains besides the new units: it needs model.freeze_old=true")
    loaded, head_trained = source.load()
    maps = unit_maps(loaded, widen, widen_init)
    copy_head = head_trained and loaded.fc.out_features == net.fc.out_features
    transfer(loaded, net, maps, copy_head=copy_head, noise=float(widen_noise))
    if freeze_old:
        freeze_units(net, added_units(net, widen), [*(train_also or []), *([] if copy_head else ["fc"])])


def inception_v1(
    *,
    num_classes: int = 1008,
    widen: Mapping[str, int] | None = None,
    weights: str | None = None,
    init_from: str | None = None,
    widen_init: str = "zero",
    widen_noise: float = 0.0,
    freeze_old: bool = False,
    train_also: Sequence[str] | None = None,
    widen_batches: int = 4,
    new_lr_scale: float = 1.0,
    carry_optimizer: bool = False,
    **arch: Any,
) -> InceptionV1:
    """An InceptionV1 from its config, through every step of the pipeline (the `_target_` of conf/model/inception_v1*).

    Without ``weights``/``init_from`` this is ``InceptionV1(**config)``. With them, the loaded network fixes
    the architecture, ``widen`` edits it without changing its function (new units start silent,
    ``widen_init``), negative widths prune, and ``freeze_old`` trains only the new units.

    ``widen_init`` gradmax / tiny build their units like zero; the entry point rewrites them on ``widen_batches``
    training batches (:mod:`harness.growth.widen_init`); ``new_lr_scale`` and ``carry_optimizer`` are read by the
    training module (:mod:`harness.growth.carry`).

    Usage: ``inception_v1(weights="inception5h.pth", num_classes=1008, widen={"mixed3b_5x5": 8})``
    """
    check_growth_keys(widen_init, widen_batches, new_lr_scale)
    if not (weights or init_from):
        if freeze_old:
            raise ConfigError("model.freeze_old=true needs trained weights: set model.weights or model.init_from")
        return InceptionV1(num_classes=num_classes, widen=widen, **arch)
    given = {**_DEFAULTS, **arch}
    _check_args(num_classes, given["dropout"], given["min_input_size"])
    source = resolve_source(given, weights=weights, init_from=init_from)
    edits = check_widen(widen, source.arch["insert"], source.arch["last_layer"])
    final = {**arch, **{k: source.arch[k] for k in ARCH_KEYS}, "widen": add_widen(source.arch["widen"], edits)}
    net = InceptionV1(num_classes=num_classes, **final)
    initialise_from(net, source, edits, widen_init, widen_noise, freeze_old, train_also)
    return net


def build_model(
    model_cfg: Mapping[str, Any], num_classes: int | None = None, image_size: int | None = None
) -> nn.Module:
    """Instantiate a model config (`_target_` + arguments), filling ``num_classes`` when it is null.

    The pre-pipeline spelling ``_target_: harness.models.InceptionV1`` (run records, older configs) is built
    by :func:`inception_v1` too, so its loading keys keep working. ``image_size`` is checked against the
    network's smallest input.
    """
    cfg = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(_plain(dict(model_cfg)))
    if str(cfg.get("_target_", "")) in INCEPTION_TARGETS[1:]:
        cfg = OmegaConf.merge(cfg, {"_target_": INCEPTION_TARGET})
    kwargs = {"num_classes": num_classes} if cfg.get("num_classes") is None and num_classes is not None else {}
    net = instantiate_model(cfg, image_size=image_size or 64, **kwargs)  # arguments checked: one-line errors
    if image_size is not None and hasattr(net, "check_input_size"):
        net.check_input_size(image_size)
    return net


def _stored(obj: Any) -> dict[str, Any] | None:
    meta = obj.get(CHECKPOINT_KEY) if isinstance(obj, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) and isinstance(meta.get("architecture"), Mapping) else None


def run_of(ckpt_path: str | Path, obj: Any = None) -> dict[str, Any]:
    """What built a checkpoint: ``architecture``, ``classes``, ``config`` (model, data), ``variant``, ``seed``.

    From the checkpoint itself when it carries ``CHECKPOINT_KEY``; else (checkpoints written before it
    did) from its run's record.json, the checkpoint's folder or its parent.
    """
    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} does not exist")
    meta = _stored(load_torch_file(ckpt, "checkpoint") if obj is None else obj)
    if meta is not None:
        return meta
    record = record_of_checkpoint(ckpt)
    if record is None:
        raise ConfigError(
            f"no {RECORD_NAME} next to checkpoint {ckpt}, and the checkpoint does not describe its "
            f"architecture (written before harness stored it): pass the run's model config instead"
        )
    return load_record(record)


def load_net(ckpt_path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(network with trained weights, what built it: see :func:`run_of`) from a harness-train checkpoint.

    Usage: ``net, run = load_net("outputs/2026-11-22/20-48-54/checkpoints/last.ckpt")``
    """
    ckpt = Path(ckpt_path)
    obj = load_torch_file(ckpt, "checkpoint") if ckpt.is_file() else None
    run = run_of(ckpt, obj)
    model_cfg = run.get("architecture") or architecture(run["config"]["model"])
    net = build_model(model_cfg, num_classes=len(run["classes"]))
    state = state_dict_of(obj, ckpt_path, what="checkpoint")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"checkpoint {ckpt_path} does not fit its run's model: {str(err).splitlines()[0]}") from None
    return net, run
