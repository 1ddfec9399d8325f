"""The grow loop: one (policy, seed) chain per harness-train job (``experiment=grow_loop``).

Round 0 trains the base model (``grow.base_steps``); each of the ``grow.rounds`` rounds then lets the policy
(:mod:`harness.grow.policies`) pick an edit of ``grow.budget`` parameters from the last round's record (its
probes), applies it and trains ``grow.steps`` more steps:

* ``grow.mode=continue`` (default): grow the trained network function-preservingly (``model.init_from`` the
  last checkpoint + the round's ``model.widen``; step-0 max |logit change| measured and refused above
  :data:`harness.oracle.candidates.TOLERANCE`) and keep training.
* ``grow.mode=scratch``: retrain from initialisation with the accumulated edits (``grow.base_steps`` each).

The job's own ``record.json`` (variant = the policy, so ``harness-compare <multirun> --baseline random`` is the
verdict) holds ``grow.edits`` (per round: overrides, parameters added, the evidence the policy cited), the
rounds (``grow.rounds``: steps, parameters, val/test metrics, the first batches seen), per-round metrics as
``round<k>/<metric>`` and the final round's ``val/*`` and ``test/*``. Round runs live in ``rounds/round<k>``
below the job; harness-compare skips records nested in another run's folder.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.facts import keys
from harness.facts.edits import add_widen
from harness.facts.errors import ConfigError
from harness.facts.overrides import as_overrides
from harness.grow import policies, rounds
from harness.models.pricing import count_params
from harness.oracle.candidates import DEFAULT_BUDGET_FRACTION, TOLERANCE
from harness.run.records import RECORD_NAME, RunRecord

log = logging.getLogger("harness.grow")

MODES = ("continue", "scratch")
ROUND_METRICS = (keys.VAL_LOSS, keys.VAL_ACC, keys.TRAIN_LOSS, keys.TEST_LOSS, keys.TEST_ACC)
CHECK_IMAGES = 32


def _int(grow: Any, key: str, low: int) -> int:
    value = grow.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"grow.{key} must be an integer >= {low}, got {value!r}")
    return int(value)


def check(grow: Any) -> None:
    """One line per bad grow.* value, before anything trains."""
    policies.check_policy(str(grow.get("policy")))
    if grow.get("mode") not in MODES:
        raise ConfigError(f"unknown grow.mode {grow.get('mode')!r}; valid: {', '.join(MODES)}")
    _int(grow, "rounds", 0), _int(grow, "steps", 1), _int(grow, "base_steps", 1)
    budget = grow.get("budget")
    if budget is not None and budget != TO_WIDTH_BUDGET and (isinstance(budget, bool) or not isinstance(budget, int)
                                                              or budget < 1):  # fmt: skip
        raise ConfigError(f"grow.budget must be a number of parameters >= 1, null (10% of the base) or "
                          f"{TO_WIDTH_BUDGET} (to_width's mean per round), got {budget!r}")  # fmt: skip


# grow.budget=to_width: every policy adds per round what the to_width policy adds on average, so a chain of any
# policy ends at the parameter count of the target width (experiment=grow_early: the static baseline's).
TO_WIDTH_BUDGET = "to_width"


def resolve_budget(grow: Any, base_model: dict[str, Any], n_classes: int) -> int:
    """Parameters per round: grow.budget, 10% of the base (null), or (target width's - base's) / grow.rounds."""
    base_params = count_params(_arch(base_model), n_classes)
    budget = grow.get("budget")
    if budget is None:
        return round(DEFAULT_BUDGET_FRACTION * base_params)
    if budget != TO_WIDTH_BUDGET:
        return int(budget)
    goal = count_params(_arch({**base_model, "width": _target_width(grow, base_model)}), n_classes)
    return max(1, round((goal - base_params) / max(int(grow.rounds), 1)))


def _target_width(grow: Any, base_model: dict[str, Any]) -> float:
    """grow.target_width of the to_width policy and budget: a number above the base model's width."""
    value, base = grow.get("target_width"), float(base_model.get("width", 1.0))
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > base:
        raise ConfigError(f"grow.policy=to_width and grow.budget=to_width need grow.target_width > the base "
                          f"model.width ({base:g}), "
                          f"got {value!r}")  # fmt: skip
    return float(value)


def _suggest_cfg(grow: Any) -> Any:
    from harness.suggest.config import load_with_weights

    return load_with_weights(grow.get("suggest_weights"))


def _arch(model: dict[str, Any]) -> dict[str, Any]:
    from harness.models.build import architecture

    return architecture(model)


def next_model(mode: str, base_model: dict, prev_model: dict, prev_ckpt: str, pick: policies.Pick,
               total: dict) -> dict[str, Any]:  # fmt: skip
    """The model config of the next round: grown from the checkpoint (continue) or the base plus all edits."""
    if mode == "continue":
        if pick.insert:
            raise ConfigError("grow.mode=continue cannot insert blocks function-preservingly; use grow.mode=scratch")
        keep = {k: base_model[k] for k in ("widen_init", "widen_noise", "widen_batches", "new_lr_scale",
                                           "carry_optimizer") if k in base_model}  # fmt: skip
        return {**_arch(prev_model), **keep, "widen": dict(pick.widen), "init_from": str(prev_ckpt)}
    arch = _arch(base_model)
    return {**arch, "widen": add_widen(arch.get("widen"), total["widen"]),
            "insert": [*(arch.get("insert") or []), *total["insert"]]}  # fmt: skip


TrainFn = Callable[[DictConfig], tuple[dict[str, float], dict[str, Any]]]


def run_chain(cfg: DictConfig, train: TrainFn) -> dict[str, float]:
    """Train one (policy, seed) chain with ``train`` (harness.train.train, passed in: the entry point imports this
    module, not the other way round); returns the final metrics. The chain's record is always written."""
    from harness.suggest.load import load_run

    grow = cfg.grow
    check(grow)
    if grow.get("threads"):
        import torch

        torch.set_num_threads(int(grow.threads))
    job = OmegaConf.to_container(cfg, resolve=True)
    job.pop("hydra", None)
    policy, mode, n_rounds = str(grow.policy), str(grow.mode), int(grow.rounds)
    job_dir = Path(cfg.paths.output_dir)
    job["variant"] = str(cfg.get("variant") or policy)
    record = RunRecord(job_dir, variant=job["variant"], seed=cfg.seed, tags=list(cfg.tags), config=job)
    state: dict[str, Any] = {"policy": policy, "mode": mode, "rounds": [], "edits": []}
    record.update(grow=state)
    record.save()
    probes_of = dict(grow.get("probes") or {})
    need = list(probes_of.get(policy) or [])
    if policy in policies.PROBE_POLICIES and policy not in need:  # before round 0 trains, not after it
        has = ", ".join(need) or "none"
        raise ConfigError(f"grow.policy={policy} reads the {policy} probe's scores, and grow.probes.{policy} does "
                          f"not list it (has: {has}); set grow.probes.{policy}=[{policy}]")  # fmt: skip
    suggest_cfg = _suggest_cfg(grow) if policy == "suggest" else None
    base_model = dict(job["model"])
    if policy == "to_width" or grow.get("budget") == TO_WIDTH_BUDGET:
        _target_width(grow, base_model)  # before anything trains
    model, total = base_model, {"widen": {}, "insert": []}
    metrics: dict[str, float] = {}
    images, cpu_start = None, time.process_time()
    with record.track():
        for k in range(n_rounds + 1):
            last = k == n_rounds
            steps = int(grow.base_steps) if (k == 0 or mode == "scratch") else int(grow.steps)
            run_cfg = rounds.round_config(job, job_dir, k, model, steps, [] if last else need, test=last)
            started, cpu = time.perf_counter(), time.process_time()
            metrics, objects = train(run_cfg)
            data = objects["record"].data
            row = {"round": k, "seed": int(run_cfg.seed), "steps": int(objects["trainer"].global_step),
                   "params": data["model"]["params/total"], "wall_s": round(time.perf_counter() - started, 1),
                   "cpu_s": round(time.process_time() - cpu, 1),
                   "run_dir": str(rounds.round_dir(job_dir, k)),
                   "first_batches": rounds.first_batches(objects["trainer"]),
                   **{m: metrics[m] for m in ROUND_METRICS if m in metrics}}  # fmt: skip
            state["rounds"].append(row)
            record.data["metrics"].update({f"round{k}/{m}": metrics[m] for m in ROUND_METRICS if m in metrics})
            record.data["epochs"].append({"epoch": k, "step": sum(r["steps"] for r in state["rounds"]),
                                          **{m: metrics[m] for m in ROUND_METRICS if m in metrics}})  # fmt: skip
            record.update(
                model=data["model"], classes=data.get("classes"), checkpoints=data.get("checkpoints"), grow=state
            )
            record.save()
            if last:
                break
            n_classes = len(data.get("classes") or [])
            budget = state.get("budget")
            if budget is None:
                state["budget"] = budget = resolve_budget(grow, base_model, n_classes)
            arch = _arch(model)
            rng = random.Random(f"grow/{cfg.seed}/{k}")
            summary = load_run(rounds.round_dir(job_dir, k) / RECORD_NAME)
            ckpt = (data.get("checkpoints") or {}).get("last") or (data.get("checkpoints") or {}).get("best")
            if policy == "to_width":
                pick = policies.to_width(_arch(base_model), arch, _target_width(grow, base_model), k + 1, n_rounds)
            else:
                measured = None
                if policy in policies.MEASURED_POLICIES:
                    if not ckpt:
                        raise ConfigError(f"grow.policy={policy} measures round {k}'s network: it left no checkpoint")
                    sets = policies.measured_sets(grow)
                    measured = partial(policies.measure, policy, model, ckpt, job["data"], num_classes=n_classes,
                                       sets=sets, seed=int(cfg.seed))  # fmt: skip
                pick = policies.choose(policy, arch, n_classes, budget, summary, rng, suggest_cfg, mode == "scratch",
                                       measured)  # fmt: skip
            if mode == "continue" and not ckpt:
                raise ConfigError(f"round {k} left no checkpoint to grow from (callbacks.model_checkpoint is needed)")
            total = {"widen": add_widen(total["widen"], pick.widen), "insert": [*total["insert"], *pick.insert]}
            model = next_model(mode, base_model, model, ckpt, pick, total)
            added = count_params(_arch(model), n_classes) - count_params(arch, n_classes)
            edit = {"round": k + 1, "policy": policy, "overrides": as_overrides(pick.widen, pick.insert),
                    "widen": pick.widen, "insert": pick.insert, "budget": budget, "evidence": pick.evidence,
                    **pick.detail, "params_added": added}  # fmt: skip
            if mode == "continue":
                if images is None:
                    images = rounds.check_images(job["data"], CHECK_IMAGES)
                change = rounds.logit_change(ckpt, model, images)
                edit["max_logit_change"] = change
                if change > TOLERANCE:
                    state["edits"].append(edit)
                    record.update(grow=state)
                    raise ConfigError(f"round {k + 1}: the {policy} edit {edit['overrides']} is not function-"
                                      f"preserving (max |logit change| {change:.2g} > {TOLERANCE:g})")  # fmt: skip
            state["edits"].append(edit)
            record.update(grow=state)
            record.save()
            log.info("round %d: %s %s (+%d params)", k + 1, policy, " ".join(edit["overrides"]) or "no edit", added)
        record.update(
            test={m: v for m, v in metrics.items() if m.startswith("test/")},
            status="finished",
            grow=state,
            cpu_seconds=round(time.process_time() - cpu_start, 1),
        )
        record.data["metrics"].update(metrics)
    return metrics
