"""Capture activations by layer name (public home of :mod:`harness.models.hooks`, kept for imports).

Usage:
    out, cache = run_with_cache(net, images, names=["mixed3b", "mixed3b_5x5"])
    with capture(net, ["mixed3b"]) as cache:
        net(images)
"""

from harness.models.hooks import capture, eval_mode, forward_until, run_with_cache
from harness.models.names import resolve

__all__ = ["capture", "eval_mode", "forward_until", "resolve", "run_with_cache"]
