"""Interrupt a probe that runs past its time limit (`probing.probe_timeout_s`).

Why a signal and not a worker thread: Python cannot stop a thread, so a probe abandoned in a thread
would keep running, with its hooks still registered on the model that training goes on using and
racing it for the same weights. SIGALRM instead raises `ProbeTimeout` inside the probe, in the main
thread, between two Python bytecodes (probes loop in Python, so it lands between torch ops); the
probe's own `finally` blocks (`harness.models.hooks.capture`, `eval_mode`) then clean up as for any error.
Where no signal can be used (Windows, a non-main thread, an alarm already set by someone else) the
probe runs to the end and the runner marks it failed afterwards if it took too long.

Usage:
    with time_limit(120):
        result = probe.run(ctx)  # raises ProbeTimeout after 120 s
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harness.facts.errors import ConfigError

log = logging.getLogger(__name__)


class ProbeTimeout(BaseException):
    """Raised inside a probe whose time is up.

    A BaseException (like KeyboardInterrupt) so that a probe's own `except Exception` cannot swallow it.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(f"exceeded its time limit of {seconds:g} s (probing.probe_timeout_s)")
        self.seconds = seconds


def check_limit(seconds: float | None) -> float | None:
    """A valid `probing.probe_timeout_s`: a positive number of seconds, or None for no limit."""
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0):
        raise ConfigError(f"probing.probe_timeout_s must be a positive number of seconds or null, not {seconds!r}")
    return seconds


def can_interrupt() -> bool:
    """True where `time_limit` can stop a probe: POSIX interval timers, called from the main thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[bool]:
    """Raise `ProbeTimeout` in the block after `seconds`; yields whether it can (else the caller measures).

    The previous SIGALRM handler is restored afterwards. An alarm that is already running (e.g. a test
    runner's own timeout) is left untouched and this block is not interrupted.
    """
    if seconds is None or not can_interrupt():
        yield False
        return
    previous = signal.getsignal(signal.SIGALRM)
    previous = signal.SIG_DFL if previous is None else previous  # None: set outside Python, cannot be put back
    armed = [True]

    def on_alarm(signum: int, frame: object) -> None:
        if armed[0]:
            armed[0] = False  # at most one ProbeTimeout per block, even if cleanup is slow
            raise ProbeTimeout(seconds)

    signal.signal(signal.SIGALRM, on_alarm)
    outer = signal.setitimer(signal.ITIMER_REAL, seconds)
    if outer[0] > 0:  # someone else's alarm: put it back and only measure
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, *outer)
        signal.signal(signal.SIGALRM, previous)
        log.debug("an alarm is already set; the probe time limit is checked after the probe instead")
        yield False
        return

    def disarm() -> None:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    try:
        yield True
    finally:
        try:
            disarm()
        except ProbeTimeout:  # the alarm went off during the cleanup itself: it cannot fire again
            disarm()
