"""One exception type for bad user input.

Why: the entry points catch exactly this type and print its message as one line
(no traceback), while genuine bugs still surface with a full traceback.
"""


class ConfigError(ValueError):
    """A user-facing configuration error whose message names the valid choices.

    Usage: ``raise ConfigError(f"unknown branch 'x'; valid: {', '.join(names)}")``
    """
