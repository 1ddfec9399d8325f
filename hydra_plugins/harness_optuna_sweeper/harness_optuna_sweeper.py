"""The Hydra plugin entry for `hydra/sweeper=harness_optuna` (Hydra instantiates plugins from `hydra_plugins.*` only).

Why a subclass and not the class itself: Hydra registers a plugin under the module it is defined in, and the
implementation lives in the `harness` package (`harness.sweepers.optuna`, where its docstring says why it exists).
"""

from harness.sweepers.optuna import HarnessOptunaSweeper as _Sweeper


class HarnessOptunaSweeper(_Sweeper):
    """See `harness.sweepers.optuna.HarnessOptunaSweeper`."""
