"""Probe faults cost only the faulty probe: raising, non-finite scalars, malformed output and running past
`probing.probe_timeout_s` are each recorded as failed with the reason, next to a good probe's results,
with no hook, eval mode or grad mode left behind, in the runner and through a whole training run."""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import World
from harness.facts.errors import ConfigError
from harness.models import InceptionV1
from harness.models.hooks import capture
from harness.probes import Probe, ProbeContext, ProbeResult, ProbeSet
from harness.probes.callback import ProbeCallback
from harness.probes.runner import publish, record_entry, run_probes
from harness.run.records import RunRecord
from harness.train import train

LIMIT = 0.5  # seconds; the slow probes below never end on their own


class Good(Probe):
    name = "good"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return ProbeResult(scalars={f"{k}/units": float(a.shape[1]) for k, a in ctx.activations().items()})


class Raising(Probe):
    name = "raising"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        raise RuntimeError("planted failure")


class NonFinite(Probe):
    name = "nonfinite"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return ProbeResult(scalars={"conv2d0/ok": 1.0, "mixed3a/detectors": float("nan"), "conv2d0/x": float("inf")})


class Malformed(Probe):
    name = "malformed"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return ProbeResult(scalars={"conv2d0/ok": 2.0}, images={"flat": np.zeros(5)}, tables={"rows": "not rows"})


class NotAResult(Probe):
    name = "nothing"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        return None  # type: ignore[return-value]


class Slow(Probe):
    """Loops forever holding capture hooks on the model."""

    name = "slow"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        with capture(ctx.model, ctx.layers[:1]):
            while True:
                time.sleep(0.01)


class Careless(Probe):
    """Leaves the model in eval mode, grad off and a hand-made hook, and swallows every Exception."""

    name = "careless"

    def run(self, ctx: ProbeContext) -> ProbeResult:
        ctx.model.eval()
        torch.set_grad_enabled(False)
        ctx.model.register_forward_hook(lambda *args: None)
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # a ProbeTimeout is not an Exception: this cannot keep the probe alive
                pass


class Sleepy(Probe):
    """Ends on its own, after `seconds`."""

    name = "sleepy"

    def __init__(self, seconds: float = 0.3) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self, ctx: ProbeContext) -> ProbeResult:
        time.sleep(self.seconds)
        return ProbeResult(scalars={"conv2d0/ok": 1.0})


# probe -> the reason it is recorded as failed (None: it is not)
CASES = {
    "good": (Good, None),
    "raising": (Raising, r"^RuntimeError: planted failure$"),
    "nonfinite": (NonFinite, r"^returned non-finite values for mixed3a/detectors=nan, conv2d0/x=inf$"),
    "malformed": (Malformed, r"tables that are not lists of dicts: rows; .*images that are not HxWx3 arrays: flat$"),
    "nothing": (NotAResult, r"^returned NoneType, not a ProbeResult$"),
    "slow": (Slow, rf"^exceeded its time limit of {LIMIT:g} s \(probing.probe_timeout_s\)$"),
    "careless": (Careless, rf"^exceeded its time limit of {LIMIT:g} s"),
}


def _ctx() -> ProbeContext:
    torch.manual_seed(0)
    net = InceptionV1(num_classes=8, width=0.125, batch_norm=True, lrn=False, last_layer="mixed3a")
    return ProbeContext(net, ["conv2d0", "mixed3a"], ProbeSet.from_world(World(image_size=32), n=16, seed=0))


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_each_faulty_probe_fails_alone_and_leaves_the_model_as_it_was(caplog, one_thread) -> None:
    ctx = _ctx()
    ctx.model.train()
    handler = signal.getsignal(signal.SIGALRM)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="harness.probes.runner"):
        outcomes = {o.name: o for o in run_probes({n: cls() for n, (cls, _) in CASES.items()}, ctx, timeout_s=LIMIT)}
    assert time.perf_counter() - started < 2 * len(CASES) * LIMIT + 5  # loose: the slow ones were stopped
    for name, (_, reason) in CASES.items():
        if reason is None:
            assert outcomes[name].error is None and outcomes[name].scalars()[f"{name}/mixed3a/units"] == 32.0
        else:
            assert re.search(reason, outcomes[name].error or ""), (name, outcomes[name].error)
            assert outcomes[name].scalars()[f"{name}/failed"] == 1.0
    for name in ("slow", "careless"):
        assert outcomes[name].seconds < 2 * LIMIT + 0.5  # control came back near the limit
    # the model as before: no hooks, train mode, grad on; the alarm handler and timer as before
    assert _hooks(ctx.model) == 0 and ctx.model.training and all(m.training for m in ctx.model.modules())
    assert torch.is_grad_enabled()
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert "probe careless left 1 hooks on the model; removed them" in caplog.text
    # the finite part of a partly bad result is kept (and reaches consumers); its record entry is strict JSON
    assert outcomes["nonfinite"].result.scalars == {"conv2d0/ok": 1.0} and "nonfinite" in ctx.results
    assert outcomes["malformed"].result.scalars == {"conv2d0/ok": 2.0} and not outcomes["malformed"].result.images
    entry = json.loads(json.dumps(record_entry(outcomes["nonfinite"], 0), allow_nan=False))
    assert entry["scalars"] == {"conv2d0/ok": 1.0} and entry["error"].startswith("returned non-finite")


def test_without_signals_a_slow_probe_is_marked_failed_afterwards(one_thread) -> None:
    ctx, found = _ctx(), []
    worker = threading.Thread(target=lambda: found.extend(run_probes({"sleepy": Sleepy(0.3)}, ctx, timeout_s=0.1)))
    worker.start()
    worker.join(timeout=30)
    (outcome,) = found
    assert re.fullmatch(r"ran 0\.\d s, past its time limit of 0.1 s \(probing.probe_timeout_s\)", outcome.error)
    assert outcome.result.scalars == {"conv2d0/ok": 1.0}  # what it found is still kept
    assert run_probes({"sleepy": Sleepy(0.0)}, ctx, timeout_s=0.1)[0].error is None


def test_an_alarm_set_by_someone_else_is_left_alone(one_thread) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *args: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        (outcome,) = run_probes({"sleepy": Sleepy(0.2)}, _ctx(), timeout_s=0.1)
        assert outcome.error.startswith("ran 0.")  # measured, not interrupted
        assert 20 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_bad_time_limit_is_a_config_error_before_training() -> None:
    for bad in (0, -1, "soon"):
        with pytest.raises(ConfigError, match="probing.probe_timeout_s must be a positive number of seconds or null"):
            ProbeCallback({"good": Good()}, probe_timeout_s=bad)


def test_publishing_survives_a_failing_logger(caplog, one_thread) -> None:
    class Broken:
        def log_metrics(self, metrics, step) -> None:
            raise BrokenPipeError("logger gone")

    outcomes = run_probes({"good": Good()}, _ctx())
    with caplog.at_level(logging.WARNING, logger="harness.probes.runner"):
        publish(outcomes, [Broken()], step=3)
    assert "could not log probe scalars to Broken: BrokenPipeError: logger gone" in caplog.text


def test_training_run_survives_faulty_probes(make_cfg, one_thread) -> None:
    cfg = make_cfg(
        "probes=[activations]",
        "+probes.raising._target_=tests.test_probe_faults.Raising",
        "+probes.nonfinite._target_=tests.test_probe_faults.NonFinite",
        "+probes.slow._target_=tests.test_probe_faults.Slow",
        "probing.probe_timeout_s=1",
        "probing.every_n_epochs=0",
        "probing.probe_set_size=32",
        "logger=csv",
        "test=false",
    )
    _, objects = train(cfg)
    record = RunRecord.load(cfg.paths.output_dir)
    assert record["status"] == "finished" and len(record["epochs"]) == 1
    probes = record["probes"]
    assert probes["activations"]["error"] is None and 0.0 <= probes["activations"]["scalars"]["mixed3b/sparsity"] <= 1
    assert probes["raising"]["error"] == "RuntimeError: planted failure"
    assert probes["nonfinite"]["error"].startswith("returned non-finite values for mixed3a/detectors=nan")
    assert probes["nonfinite"]["scalars"] == {"conv2d0/ok": 1.0}
    assert probes["slow"]["error"] == "exceeded its time limit of 1 s (probing.probe_timeout_s)"
    assert probes["slow"]["seconds"] < 5
    assert {record["metrics"][f"{n}/failed"] for n in ("raising", "nonfinite", "slow")} == {1.0}
    assert "activations/failed" not in record["metrics"]
    assert _hooks(objects["module"].net) == 0
    csv_rows = next(Path(cfg.paths.output_dir, "csv").rglob("metrics.csv")).read_text()
    assert "slow/failed" in csv_rows.splitlines()[0]
