"""Hydra discovers sweepers only under the `hydra_plugins` namespace; the code is `harness.sweepers.optuna`."""
