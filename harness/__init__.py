"""harness: interpretability-guided architecture experiments for PyTorch vision models."""

__version__ = "0.1.0"
