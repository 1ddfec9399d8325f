"""Check a composed run config before anything is built: one line per problem, naming the key.

Why by hand and not a structured-config schema: the config groups hold plain Lightning/torch/wandb
arguments (`trainer.*` is `pytorch_lightning.Trainer`'s own signature), so a full schema would restate
three libraries. The few keys a typo most often breaks are checked here with the rule and the value,
before minutes of data generation; everything else still fails with a one-line error at build time.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.facts.errors import ConfigError

_MISSING = object()


def _int(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= low), f"an integer >= {low}"


def _num(low: float, strict: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, Real) and not isinstance(v, bool) and (v > low if strict else v >= low)

    return ok, f"a number {'>' if strict else '>='} {low:g}"


def _one_of(*choices: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(map(str, choices))


# key -> (rule, description); a key absent from the config is not checked (other data/model groups).
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _int(0),
    "data.batch_size": _int(1),
    "data.train_size": _int(1),
    "data.val_size": _int(1),
    "data.test_size": _int(1),
    "data.seed": _int(0),
    "data.num_workers": _int(0),
    "trainer.max_epochs": _int(-1),
    "trainer.max_steps": _int(-1),
    "trainer.check_val_every_n_epoch": _int(1),
    "trainer.log_every_n_steps": _int(1),
    "module.optimizer.lr": _num(0, strict=True),
    "module.optimizer.weight_decay": _num(0, strict=False),
    "model.widen_init": _one_of("zero", "net2net", "gradmax", "tiny"),
    "model.widen_batches": _int(1),
    "model.new_lr_scale": _num(0, strict=True),
    "model.carry_optimizer": _one_of(True, False),
    "module.schedule_steps": _int(1),
    "probing.every_n_epochs": _int(0),
    "probing.budget_s": _num(0, strict=True),
    "probing.probe_set_size": _int(2),
    "probing.batch_size": _int(1),
    "probing.probe_timeout_s": _num(0, strict=True),
    "logger.wandb.mode": _one_of("auto", "online", "offline", "disabled"),
    "logger.wandb.init_timeout": _num(0, strict=True),
    "logger.wandb.finish_timeout": _num(0, strict=False),
    "logger.wandb.log_model": ((lambda v: isinstance(v, bool) or v == "all"), "true, false or all"),
}


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError on the first key whose value breaks its rule (see CHECKS)."""
    for key, (ok, wanted) in CHECKS.items():
        value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        if value is _MISSING or value is None and key not in ("seed", "module.optimizer.lr"):
            continue
        if not ok(value):
            raise ConfigError(f"{key} must be {wanted}, got {value!r}")


def check_missing(cfg: DictConfig) -> None:
    """ConfigError naming each mandatory key (`???` in its config file) that is still unset, e.g. `data.root`
    of `data=imagefolder`, before anything is built or written (OmegaConf would raise MissingMandatoryValue
    from deep inside instantiation)."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not str(k).startswith("hydra."))
    if missing:
        keys = ", ".join(missing)
        example = " ".join(f"{k}=..." for k in missing)
        raise ConfigError(f"missing value for {keys} (mandatory in the chosen config); set it, e.g. {example}")
