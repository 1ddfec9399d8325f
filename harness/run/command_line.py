"""Vet command-line overrides before Hydra runs: a typo gets one line with the valid choices.

Why: Hydra's own messages for an unknown key or option span several lines (config search paths,
`full_key`, `object_type`) and never suggest the key you meant. Here the overrides are composed once
against the real config; a failure becomes `unknown key 'modle.width' (did you mean 'model.width'?)`.
A sweep (`-m`) is checked with the first value of each swept key; anything this check cannot judge
is left to Hydra.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_PASS_THROUGH_FLAGS = ("-m", "--multirun")


def check_command_line(argv: list[str], conf_dir: str, config_name: str) -> str | None:
    """None when the overrides compose; else a one-line description of the first problem."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if any(a.startswith("-") and a not in _PASS_THROUGH_FLAGS for a in argv):
        return None  # --help, --cfg job, -c, --info ...: Hydra's own business
    try:
        overrides = _single_values([a for a in argv if not a.startswith("-")])
    except OverrideParseException as err:
        return f"cannot parse override: {str(err).splitlines()[0]} (see `harness-train --help`)"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            compose(config_name, overrides=overrides, return_hydra_config=True)
            return None
    except MissingConfigException as err:
        return _missing_option(err, conf_dir)
    except ConfigCompositionException as err:
        return _bad_key(err, overrides, conf_dir, config_name)
    except Exception:
        return None  # e.g. an interpolation only the run can resolve: let Hydra and the run report it
    finally:
        GlobalHydra.instance().clear()


def _single_values(overrides: list[str]) -> list[str]:
    """Sweep overrides (`a=1,2`, `b=range(3)`) replaced by their first value; unjudgeable ones dropped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if not parsed.is_sweep_override():
            out.append(text)
            continue
        try:
            first = next(iter(parsed.sweep_string_iterator()))
        except Exception:  # interval()/tag() sweeps (Optuna) have no first value
            continue
        out.append(f"{parsed.get_key_element()}={first}")
    return out


def _missing_option(err: Exception, conf_dir: str) -> str:
    wanted = str(getattr(err, "missing_cfg_file", "") or "")
    group, _, name = wanted.rpartition("/")
    options = list(getattr(err, "options", None) or [])
    if not options and group:
        options = sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))
    return f"unknown option {name!r} for {group or 'config'}; valid: {', '.join(options) or '(none found)'}"


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items_ex(resolve=False) if hasattr(cfg, "items_ex") else cfg.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, DictConfig):
            keys.extend(_all_keys(value, f"{full}."))
    return keys


def _bad_key(err: Exception, overrides: list[str], conf_dir: str, config_name: str) -> str:
    first = str(err).strip().splitlines()[0]
    if not first.startswith("Could not override '"):
        return " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    key = first.split("'")[1]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            base = compose(config_name, overrides=keep)
    except Exception:
        return f"unknown key {key!r}; add a new key with '+{key}=...'"
    OmegaConf.set_struct(base, False)
    known = _all_keys(base)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    parent = key.rpartition(".")[0]
    while parent and parent not in known:  # 'modle.width': list what exists at the top instead
        parent = parent.rpartition(".")[0]
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent and k != key]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"keys under {parent!r}" if parent else "top-level keys"
    listing = f"{where}: {', '.join(siblings[:30])}" if siblings else f"{parent!r} has no keys"
    return f"unknown key {key!r}{hint}; {listing}; add a new key with '+{key}=...'"
