"""A WandbLogger that works with no account and no network: offline by default, never prompting.

Why not plain `WandbLogger(offline=...)`: the choice online/offline must follow whether the user has
configured wandb (API key in the environment or a `wandb login` netrc entry), an unreachable server
must not hang or kill the run, and the offline files must land inside the run directory so that one
folder holds one run. We start the wandb run ourselves and hand it to Lightning's logger.

Why a guarded subclass: the run record (`harness.run.records`) is the source of truth, so wandb may fail
(bad settings, a dead `wandb-core` process, a full disk) without costing the run. A setting wandb
rejects at start falls back to offline, then to no wandb; a wandb call that fails mid-run costs one
warning with the way to sync or rerun logging, and later wandb calls are skipped.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger

from harness.facts.errors import ConfigError
from harness.run.wandb_layout import (
    PROBE_EPOCH,
    PROBE_ROUND,
    PROBE_SECONDS,
    TRAIN_PREFIXES,
    TRAIN_STEP,
    VAL_ACC,
    wandb_configured,
)

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


def resolve_mode(mode: str, env: Mapping[str, str] | None = None) -> str:
    """The wandb mode to use: WANDB_MODE wins, then the config; `auto` = online iff configured."""
    env = os.environ if env is None else env
    if mode not in MODES:
        raise ConfigError(f"unknown logger.wandb.mode '{mode}'; valid: {', '.join(MODES)}")
    forced = env.get("WANDB_MODE")
    if forced:
        return {"dryrun": "offline", "run": "online"}.get(forced, forced)
    if mode == "auto":
        return "online" if wandb_configured(env) else "offline"
    return mode


class SafeWandbLogger(WandbLogger):
    """Lightning's WandbLogger whose wandb calls never raise into training.

    The first failing call (log_metrics, log_hyperparams, log_table, log_image, `experiment.<method>`,
    finalize) logs one warning saying how to sync or rerun logging; later calls are skipped. `finish()`
    (also reached as `experiment.finish`) ends the wandb run and never raises.
    Usage: ``SafeWandbLogger(experiment=wandb.init(...), save_dir=run_dir, project="harness", wandb_mode="offline")``
    """

    def __init__(self, *args: Any, wandb_mode: str = "offline", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wandb_mode = wandb_mode  # the run record reports where the data went
        self.failure: str | None = None  # the first error; wandb calls are skipped from then on
        self._step: int | None = None
        self._max_step = 0  # trainer/global_step as logged: never goes back (testing reloads an earlier checkpoint)
        self._finished = False
        self._probe_round = 0
        self._probe_axes: set[str] = set()

    @property
    def experiment(self) -> Any:
        """The wandb run, its methods guarded (train.py calls `experiment.finish` in a `finally`)."""
        return _GuardedRun(super().experiment, self)

    def guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, or None once wandb has failed; the first failure is warned about, not raised."""
        if self.failure is not None or self._finished:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            self._fail(err)
            return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is not None:  # `test/*` comes at the best checkpoint's step, earlier than the last: chart it last
            step = self._max_step = max(int(step), self._max_step)
        self._step = step if step is not None else self._step
        if self.failure is None:
            self.guard(super().log_metrics, metrics, step)

    def log_probe_round(self, outcomes: Sequence[Any], epoch: int | None = None) -> None:
        """One probing round as one history row on the `probe/round` axis (see :mod:`harness.run.wandb_probes`)."""
        if self.failure is not None or self._finished or self._experiment is None:
            return
        from harness.run.wandb_probes import round_payload

        row, summary = round_payload(outcomes, self._probe_round, epoch)  # bad data raises: the caller's error
        new = {o.name for o in outcomes} - self._probe_axes
        for name in sorted(new):
            self.guard(self._experiment.define_metric, f"{name}/*", step_metric=PROBE_ROUND)
        self._probe_axes |= new
        self.guard(self._experiment.log, row)
        self.log_summary(summary)
        self._probe_round += 1

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Values for the run's summary only (constants, timings): shown in the runs table, not as charts."""
        if values and self._experiment is not None:
            self.guard(self._experiment.summary.update, dict(values))

    def log_hyperparams(self, params: Any) -> None:
        self.guard(super().log_hyperparams, params)  # writes `experiment.config`, which the run guard misses

    def log_table(self, key: str, *args: Any, step: int | None = None, **kwargs: Any) -> None:
        if self.failure is None:  # building the table can raise (bad data): that is the caller's error
            self._step = step if step is not None else self._step
            super().log_table(key, *args, step=step, **kwargs)

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        if self.failure is None:
            self._step = step if step is not None else self._step
            super().log_image(key, images, step=step, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.guard(super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self.guard(super().finalize, status)

    def finish(self, exit_code: int | None = None, **kwargs: Any) -> None:
        """End the wandb run and wait (10 s at most) until its local file holds the whole run; never raises.

        Why wait: wandb 0.31's `run.finish()` returns before wandb-core has written the end of the file, so
        reading it back (tests, `wandb sync` right after the run) could see an empty run. Safe to call twice.
        """
        if self._finished or self._experiment is None:
            return
        self._finished = True
        try:
            self._experiment.finish(exit_code=exit_code, **kwargs)
        except Exception as err:
            log.debug("wandb finish failed: %s", _one_line(err), exc_info=True)
            if self.failure is None:
                self._fail(err, at=f"the end (after step {self._step})")
            if isinstance(err, ConnectionError):  # the wandb service died: let the next run start a new one
                _reset_service()
            return
        if self.wandb_mode != "disabled":
            _wait_for_exit_record(Path(self.files_dir()), timeout=10.0)

    def _fail(self, err: Exception, at: str = "") -> None:
        self.failure = _one_line(err)
        at = at or (f"step {self._step}" if self._step is not None else "the start")
        folder = self.files_dir()
        log.warning(
            "wandb logging failed at %s: %s; the run continues and its record is complete; offline files so far: "
            "%s; sync with `wandb sync %s` or rerun logging from the record",
            at,
            self.failure,
            folder,
            folder,
        )

    def files_dir(self) -> str:
        """The folder of this wandb run's local files (what `wandb sync` takes)."""
        try:
            return str(Path(self._experiment.dir).parent)
        except Exception:
            return str(Path(self.save_dir or ".") / "wandb")


class _GuardedRun:
    """A wandb run seen through `SafeWandbLogger.experiment`: attributes as they are, methods guarded."""

    def __init__(self, run: Any, logger: SafeWandbLogger) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_logger", logger)

    def __getattr__(self, name: str) -> Any:
        if name == "finish":
            return self._logger.finish
        value = getattr(self._run, name)
        if inspect.ismethod(value):
            return functools.partial(self._logger.guard, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._run, name, value)

    def __repr__(self) -> str:
        return f"guarded {self._run!r}"


def _wait_for_exit_record(folder: Path, timeout: float) -> bool:
    """Poll the run's .wandb file until its exit record is written (then all before it is too)."""
    from wandb.proto import wandb_internal_pb2 as pb

    from harness.run.wandb_offline import iter_record_bytes

    deadline = time.monotonic() + timeout
    while True:
        try:
            for raw in list(iter_record_bytes(next(folder.glob("*.wandb"))))[:-50:-1]:  # the end of the file
                record = pb.Record()
                record.ParseFromString(raw)
                if record.WhichOneof("record_type") == "exit":
                    return True
        except Exception:  # no file yet, or a half-written record: look again
            pass
        if time.monotonic() > deadline:
            log.debug("no exit record in %s after %.0f s", folder, timeout)
            return False
        time.sleep(0.02)


def _reset_service() -> None:
    """Forget a dead wandb service so that the next `wandb.init` in this process starts a fresh one."""
    import wandb

    try:
        wandb.teardown()
    except Exception as err:  # the service is gone: teardown cannot reach it, but has dropped it
        log.debug("wandb teardown after a service failure: %s", err)


def _start(init: dict[str, Any], mode: str, settings: Any) -> Any:
    """`wandb.init`, retried once with a fresh service when an earlier run in this process lost its own."""
    import wandb

    try:
        return wandb.init(mode=mode, settings=settings, **init)
    except ConnectionError:
        _reset_service()
        return wandb.init(mode=mode, settings=settings, **init)


def make_wandb_logger(
    save_dir: str,
    project: str = "harness",
    entity: str | None = None,
    mode: str = "auto",
    group: str | None = None,
    job_type: str = "train",
    tags: Sequence[str] = (),
    name: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    init_timeout: float = 30.0,
    finish_timeout: float | None = 120.0,
    run_id: str | None = None,
    log_model: bool | str | None = False,
) -> SafeWandbLogger:
    """Start a wandb run (online, falling back to offline, then to none) and wrap it for Lightning.

    `run_id` continues an existing run (`harness-train resume=...`): online it is resumed in place,
    offline a second `offline-run-*-<id>` folder of the same run is written (sync both).

    Usage: ``make_wandb_logger(save_dir="outputs/run", group="base", run_config=resolved_cfg)``
    """
    import wandb

    resolved = resolve_mode(mode)
    log_model = check_log_model(log_model)
    from harness.run.distributed import is_rank_zero

    if not is_rank_zero():  # DDP: one wandb run, rank 0's; here Lightning hands out a dummy experiment
        return SafeWandbLogger(save_dir=str(save_dir), project=project, wandb_mode=resolved, log_model=log_model)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    init = dict(
        dir=str(save_dir),
        project=project,
        entity=entity,
        group=group,
        job_type=job_type,
        tags=list(tags),
        name=name,
        config=dict(run_config or {}),
        reinit="finish_previous",
    )
    if run_id:
        init.update(id=run_id, resume="allow")
        _leave_inherited_service()
    # finish_timeout: a dead network must not hold the end of the run; the local file keeps everything to sync.
    settings = wandb.Settings(
        silent=True,
        console="off",
        init_timeout=init_timeout,
        x_disable_stats=True,
        finish_timeout=finish_timeout or 0.0,
    )
    wandb_dir = Path(save_dir) / "wandb"
    first = _attempt(init, resolved, settings, wandb_dir)
    if isinstance(first, Exception) and resolved == "online":  # network down, bad key or entity: go offline
        run = _attempt(init, "offline", settings, wandb_dir)
        if not isinstance(run, Exception):
            resolved = "offline"
            log.warning(
                "wandb online init failed (%s); logging offline instead; sync later with `wandb sync %s/offline-run-*`",
                _one_line(first),
                wandb_dir,
            )
    else:
        run = first
    if isinstance(run, Exception):  # a setting wandb rejects even offline (e.g. the project name): no wandb
        log.warning(
            "wandb could not start (%s); this run logs without wandb and its record is complete; fix "
            "logger.wandb.* and rerun logging from the record",
            _one_line(first),
        )
        resolved = "disabled"
        run = wandb.init(mode="disabled", settings=settings, dir=str(save_dir), config=init["config"])
    if resolved != "disabled":
        define_axes(run)
    return SafeWandbLogger(experiment=run, save_dir=str(save_dir), project=project, wandb_mode=resolved,
                           log_model=log_model)  # fmt: skip


def check_log_model(value: Any) -> bool | str:
    """`logger.wandb.log_model`: false (default), true (checkpoints at the end) or `all` (as they are written)."""
    value = False if value is None else value
    if not (isinstance(value, bool) or value == "all"):
        raise ConfigError(f"logger.wandb.log_model must be true, false or all, got {value!r}")
    return value


def define_axes(run: Any) -> None:
    """Tie each chart to its axis: training metrics to `trainer/global_step`, probe rounds to `probe/round`.

    Why here: Lightning defines its axes only for a run it starts itself, and the harness hands it a started run.
    `val/acc` is summarised as its max (the checkpoint and `test/acc` use the best epoch, not the last).
    Probe prefixes get their axis when a probe first logs (`SafeWandbLogger.log_probe_round`).
    """
    run.define_metric(TRAIN_STEP)
    run.define_metric(PROBE_ROUND)
    for prefix in TRAIN_PREFIXES:
        run.define_metric(prefix if prefix == "epoch" else f"{prefix}*", step_metric=TRAIN_STEP)
    run.define_metric(VAL_ACC, step_metric=TRAIN_STEP, summary="max")
    for name in (PROBE_EPOCH, PROBE_SECONDS):
        run.define_metric(name, step_metric=PROBE_ROUND)


def _leave_inherited_service() -> None:
    """Start our own wandb service instead of a parent process's (WANDB_SERVICE is inherited by children).

    Why: a run killed while attached to a shared service stays open there under its id, and the resumed
    run's init with that id then fails; a service of our own knows nothing of the dead run.
    """
    service = os.environ.get("WANDB_SERVICE", "")
    parts = service.split("-")
    if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) != os.getpid():
        os.environ.pop("WANDB_SERVICE")


def _attempt(init: dict[str, Any], mode: str, settings: Any, wandb_dir: Path) -> Any:
    """The started run, or the exception that stopped it (its partial files removed: they are not a run)."""
    before = set(wandb_dir.glob("*run-*"))
    try:
        return _start(init, mode, settings)
    except Exception as err:
        for partial in set(wandb_dir.glob("*run-*")) - before:
            shutil.rmtree(partial, ignore_errors=True)
        return err


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
