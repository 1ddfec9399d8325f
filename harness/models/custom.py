"""Build any model config: ours, torchvision's, timm's or a user's own ``nn.Module`` class.

Why a wrapper around ``hydra.utils.instantiate``: Hydra reports a bad constructor call as
``InstantiationException: Error in call to target 'mynet.MyNet':`` with the cause on a later line, so a
user's typo in ``+model.<arg>=...`` ended in a traceback file. Here the arguments are checked against the
constructor's signature first, and the one-line :class:`ConfigError` names what is missing or unexpected
and what the constructor accepts. The same wrapper gives every model the keys our InceptionV1 has itself:

- ``weights``: a state-dict file loaded after building (a classifier of another size keeps its init);
- ``widen``: ``{module path: extra units}``, applied by :mod:`harness.models.graph_widen` (function preserving),
  with Hydra's nested spelling of dotted paths flattened back (``+model.widen.layer2.0.conv1=8``).

A target whose constructor takes ``weights``/``widen`` itself (InceptionV1, ``torchvision_model``) gets them.

Usage (Hydra): ``harness-train model=custom model._target_=mynet.MyNet +model.width=16``

Hydra's nested ``widen`` keys are flattened by :func:`harness.facts.overrides.flatten_widen` (torch-free, for the
readers of run records too).
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from harness.facts.errors import ConfigError
from harness.facts.overrides import flatten_widen

if TYPE_CHECKING:
    from torch import nn

_HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
# Keys this wrapper handles when the constructor does not take them (the growth keys are read after the build).
OWN_KEYS = ("weights", "widen", "widen_init", "widen_batches", "new_lr_scale", "carry_optimizer")
# How new units start. gradmax / tiny need training batches: the build makes their units like zero's (fresh
# fan-in, zero fan-out) and harness.growth.widen_init rewrites them once the data exists.
WIDEN_INITS: tuple[str, ...] = ("zero", "net2net", "gradmax", "tiny")


def check_growth_keys(widen_init: Any = "zero", widen_batches: Any = 4, new_lr_scale: Any = 1.0) -> None:
    """One-line ConfigErrors for the growth keys of a model config (any model), naming the valid choices."""
    if widen_init not in WIDEN_INITS:
        raise ConfigError(f"unknown model.widen_init {widen_init!r}; valid: {', '.join(WIDEN_INITS)}")
    if isinstance(widen_batches, bool) or not isinstance(widen_batches, int) or widen_batches < 1:
        raise ConfigError(f"model.widen_batches must be an integer >= 1 (training batches), got {widen_batches!r}")
    if isinstance(new_lr_scale, bool) or not isinstance(new_lr_scale, int | float) or not new_lr_scale > 0:
        raise ConfigError(f"model.new_lr_scale must be a number > 0 (the new units' LR factor), got {new_lr_scale!r}")


def _get_object(target: str) -> Any:
    """Hydra's ``get_object`` without its ERROR log line (our one-line error says the same, once)."""
    import logging

    from hydra.utils import get_object

    log = logging.getLogger("hydra.utils")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        return get_object(target)
    finally:
        log.setLevel(level)


def _locate(target: str) -> Any:
    """The class or function named by ``target``; a module in the launch folder counts as importable.

    Why the launch folder: ``python train.py`` puts the script's folder on ``sys.path``, but console scripts
    (``harness-train``) do not, so ``mynet.py`` next to where the user types the command was "not found". The
    folder is appended (installed packages still win) and only when the first lookup fails.
    """
    try:
        return _get_object(target)
    except Exception as err:
        cause = err.__cause__ or err
        here = os.getcwd()
        if isinstance(cause, ModuleNotFoundError) and here not in sys.path:
            sys.path.append(here)
            try:
                return _get_object(target)
            except Exception as again:
                cause = again.__cause__ or again
        raise ConfigError(f"cannot import model._target_={target!r}: {type(cause).__name__}: "
                          f"{str(cause).splitlines()[0] if str(cause) else ''} (its package must be installed, or "
                          f"its file in the current folder or on PYTHONPATH)") from None  # fmt: skip


def _parameters(factory: Any) -> tuple[set[str], set[str], bool]:
    """(accepted names, required names, takes **kwargs) of a class's constructor or a function."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return set(), set(), True  # a builtin we cannot inspect: let the call decide
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    accepted = {p.name for p in params if p.kind != p.POSITIONAL_ONLY}
    required = {p.name for p in params if p.default is p.empty}
    return accepted, required, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def check_arguments(target: str, factory: Any, given: set[str]) -> None:
    """ConfigError naming missing/unexpected constructor arguments, and what the constructor accepts."""
    accepted, required, open_ended = _parameters(factory)
    unexpected = [] if open_ended else sorted(given - accepted)
    missing = sorted(required - given)
    if not (unexpected or missing):
        return
    problems = []
    if missing:
        problems.append(f"missing argument(s) {', '.join(missing)} (add +model.{missing[0]}=...)")
    if unexpected:
        problems.append(f"unexpected argument(s) {', '.join(unexpected)} (drop with ~model.{unexpected[0]})")
    needs = "" if "num_classes" in accepted or open_ended else "; the constructor must take num_classes"
    raise ConfigError(f"model._target_={target}: {'; '.join(problems)}; it accepts: "
                      f"{', '.join(sorted(accepted)) or '(nothing)'}{needs}")  # fmt: skip


def instantiate_model(model_cfg: Mapping[str, Any], image_size: int = 64, **kwargs: Any) -> nn.Module:
    """``hydra.utils.instantiate(model_cfg, **kwargs)``, arguments checked; ``weights``/``widen`` for any model.

    ``image_size`` is the input size the graph is traced at for ``widen`` (a flatten's width depends on it).
    """
    import hydra
    from torch import nn

    cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    target = cfg.get("_target_")
    if not target or target == "???":
        raise ConfigError("model._target_ is not set: write model._target_=pkg.module.Class (a class or function "
                          "taking num_classes, importable from PYTHONPATH)")  # fmt: skip
    factory = _locate(str(target))
    accepted, _, open_ended = _parameters(factory)
    own = {k: cfg.pop(k) for k in OWN_KEYS if k in cfg and k not in accepted}
    check_growth_keys(*(own.get(k, d) for k, d in (("widen_init", "zero"), ("widen_batches", 4),
                                                    ("new_lr_scale", 1.0))))  # fmt: skip
    arguments = {k: v for k, v in {**cfg, **kwargs}.items() if k not in _HYDRA_KEYS}
    check_arguments(str(target), factory, set(arguments))
    try:
        net = hydra.utils.instantiate({**cfg, **kwargs})
    except Exception as err:
        cause = err.__cause__ if type(err).__name__ == "InstantiationException" and err.__cause__ else err
        raise cause from None  # ConfigErrors stay one line; other causes keep their traceback, cause first
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model._target_={target} returned a {type(net).__name__}, not a torch.nn.Module")
    if own.get("weights"):
        from harness.models.pretrained import load_torchvision_weights

        load_torchvision_weights(net, own["weights"])
    widen = flatten_widen(own.get("widen"))
    if any(widen.values()):
        from harness.models.graph_widen import widen_modules

        net = widen_modules(net, widen, image_size)
    return net
