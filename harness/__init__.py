"""harness: interpretability-guided architecture experiments for PyTorch vision models."""

__version__ = "0.1.0"

from harness.run.precision import register as _register_resolvers

_register_resolvers()  # `${auto_precision:...}` in conf/trainer/default.yaml, wherever configs are composed
