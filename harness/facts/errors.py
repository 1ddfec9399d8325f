"""One exception type for bad user input.

Why: the entry points catch exactly this type and print its message as one line
(no traceback), while genuine bugs still surface with a full traceback.
"""


class ConfigError(ValueError):
    """A user-facing configuration error whose message names the valid choices.

    Usage: ``raise ConfigError(f"unknown branch 'x'; valid: {', '.join(names)}")``
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops, keeps its last good checkpoint and is marked failed.

    Usage: ``raise TrainingDiverged("train/loss is nan at epoch 3, step 120; ...")``
    """


def config_error(err: BaseException | None) -> ConfigError | None:
    """The ConfigError behind `err`, looking through wrapping (Hydra's InstantiationException) by cause/context."""
    while err is not None:
        if isinstance(err, ConfigError):
            return err
        err = err.__cause__ or err.__context__
    return None
