"""An Optuna sweeper for Hydra on Optuna's own ask/tell API: trials of many launches share one study.

Why not the Hydra plugin: hydra-optuna-sweeper 1.3.0 (its newest release, 2026-09) still requires
`optuna<3`, and optuna 2.10's RDB storage fails against SQLAlchemy 2.x (`create_study(storage="sqlite:///...")`
dies with an `AssertionError` in `get_current_version`, measured with SQLAlchemy 2.1.9). Without RDB storage no
two jobs can share a study, which is what a search on a cluster needs. No newer plugin release lifts the pin,
so this is the small part Optuna lacks: turning Hydra's sweep grammar into Optuna distributions and Hydra's
launcher results into `study.tell`. Sampling, storage, pruning state and concurrency are Optuna's (>= 4).

Semantics (config: `conf/hydra/sweeper/harness_optuna.yaml`, used by `hparams_search=optuna`):
- `storage`: any SQLAlchemy URL (`sqlite:///path/optuna.db`, `postgresql://user@host/db`); null = the SQLite
  file `<sweep dir>/optuna.db`. Launches with the same `storage` and `study_name` share one study: each asks
  the study for its next trials, so the sampler sees every finished trial of every launch. With an explicit
  `storage` the sampler's seed is not used as is (each launch reseeds it, else concurrent launches propose the
  same points); the default per-sweep study stays reproducible from `sampler.seed`.
- `n_trials` trials per launch, asked `n_jobs` at a time and run through the configured Hydra launcher
  (`hydra/launcher=joblib` runs a batch in parallel, `slurm` submits it).
- A trial whose job raises or returns None/NaN is told FAIL with the error as a user attribute; the search
  stops only when more than `max_failure_rate` of a batch fails. Each trial records its run directory
  (`run_dir` user attribute), so `harness-compare` finds the records behind the study.
- Search space: `params` and sweep overrides on the command line, in Hydra's grammar: `interval(a, b)`
  (float), `int(interval(a, b))`, `range(a, b, step)` (int, b exclusive as in Hydra), `choice(...)` / `a,b,c`
  (categorical), `tag(log, ...)` for a log scale. Plain `key=value` overrides apply to every trial.
- `<sweep dir>/optimization_results.yaml` holds `best_params` and `best_value` of the study.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def distribution(override: Override) -> Any:
    """The Optuna distribution of one Hydra sweep override (`interval`, `range`, `choice`, `tag(log, ...)`)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    key = override.get_key_element()
    log_scale = "log" in (getattr(value, "tags", None) or set())
    if isinstance(value, IntervalSweep):
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        if all(float(v).is_integer() for v in (start, stop, step)):
            start, stop, step = int(start), int(stop), int(step)
            high = start + step * ((stop - 1 - start) // step)  # Hydra's stop is exclusive, Optuna's high is not
            return IntDistribution(start, high, log=log_scale, step=1 if log_scale else step)
        return FloatDistribution(float(start), float(stop) - float(step), step=float(step))
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(value.list))
    raise ValueError(
        f"hydra.sweeper: cannot search {key}={override.input_line or value}; use interval(a, b), "
        f"range(a, b), choice(a, b) or tag(log, interval(a, b))"
    )


def split_overrides(arguments: Sequence[str], params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(search space by key, fixed overrides): `params` first, then the command line (which wins)."""
    parser = OverridesParser.create()
    space: dict[str, Any] = {}
    fixed: list[str] = []
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        space.pop(key, None)
        fixed = [f for f in fixed if parser.parse_override(f).get_key_element() != key]
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def _run_dir(ret: Any) -> str:
    """The job's output dir (`hydra.runtime.output_dir`: where harness-train writes record.json)."""
    hydra_cfg = getattr(ret, "hydra_cfg", None)
    out = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir") if hydra_cfg is not None else None
    return str(out or getattr(ret, "working_dir", "") or "")


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _storage(url: str, attempts: int = 5) -> Any:
    """An RDB storage; SQLite gets a generous lock timeout so concurrent launches wait instead of failing.

    Why retry: two launches opening a fresh database at once race to create Optuna's tables (measured: one
    of two simultaneous launches on a new SQLite file failed in Optuna's schema version check); the loser
    finds the tables on its next attempt.
    """
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as err:
            if attempt == attempts - 1:
                raise
            log.warning("Optuna storage %s not ready (%s); retrying", url, f"{type(err).__name__}: {err}"[:200])
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


class HarnessOptunaSweeper(Sweeper):
    """Optuna trials through any Hydra launcher. Usage: `harness-train -m hparams_search=optuna`."""

    def __init__(
        self,
        direction: str = "maximize",
        study_name: str | None = None,
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        sampler: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction={direction}; valid: maximize, minimize")
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.max_failure_rate = int(n_trials), max(1, int(n_jobs)), float(max_failure_rate)
        self.sampler_cfg, self.params = sampler, dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _study(self) -> Any:
        import optuna
        from hydra.utils import instantiate

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        url = self.storage or f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}"
        sampler = self.sampler_cfg  # Hydra instantiates the sweeper recursively: usually a sampler already
        if isinstance(sampler, Mapping | DictConfig):
            sampler = instantiate(sampler)
        if self.storage and sampler is not None:
            # A shared study: launches with the same seeded sampler would propose the same parameters (measured:
            # 2 launches x 2 trials gave 2 distinct learning rates, not 4). Each launch draws its own stream.
            sampler.reseed_rng()
        return optuna.create_study(
            study_name=self.study_name,
            storage=_storage(url),
            sampler=sampler,
            direction=self.direction,
            load_if_exists=True,
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        space, fixed = split_overrides(arguments, self.params)
        study = self._study()
        log.info(
            "Optuna study %s (%s): %d trials in batches of %d; searching %s",
            study.study_name,
            self.storage or "sqlite in the sweep dir",
            self.n_trials,
            self.n_jobs,
            ", ".join(space) or "nothing",
        )
        done = 0
        while done < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - done)
            trials = [study.ask(space) for _ in range(batch)]
            overrides = [tuple(fixed + [f"{k}={_format(t.params[k])}" for k in space]) for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = []
            for trial, ret in zip(trials, returns, strict=True):
                trial.set_user_attr("run_dir", _run_dir(ret))
                try:
                    value = ret.return_value  # re-raises the job's exception
                    if value is None or not math.isfinite(float(value)):
                        raise ValueError(f"the job returned {value} (is optimized_metric logged?)")
                    study.tell(trial, float(value))
                except Exception as err:
                    error = " ".join(f"{type(err).__name__}: {err}".split())[:500]  # Hydra puts the cause on line 2
                    trial.set_user_attr("error", error)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    failures.append(f"trial {trial.number}: {error}")
                    log.warning("Optuna trial %d failed: %s", trial.number, error)
            done += batch
            if failures and len(failures) / batch > self.max_failure_rate:
                raise RuntimeError(
                    f"{len(failures)} of {batch} Optuna trials failed (more than "
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate}): {'; '.join(failures)}"
                )
        self._write_results(study)

    def _write_results(self, study: Any) -> None:
        import optuna

        finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "n_finished": len(finished)}
        if finished:
            results.update(best_params=dict(study.best_params), best_value=float(study.best_value))
            log.info("Best parameters: %s, best value %s", study.best_params, study.best_value)
        path = Path(self.config.hydra.sweep.dir) / "optimization_results.yaml"
        OmegaConf.save(OmegaConf.create(results), path)
