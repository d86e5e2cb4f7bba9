"""Exceptions shared by the library and the command line (kept import-light: the reward
worker processes import the entry-point module, so it must not pull in JAX)."""


class ConfigError(ValueError):
    """A config value or a command-line input is invalid; the message names the field and
    the fix. `field` is the dotted config field (e.g. "rl.weight_decay") when there is
    one, so the command line can quote it as the user wrote it."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class RunError(RuntimeError):
    """The run cannot go on for a reason outside the config (no readable checkpoint, the
    workdir's disk is full): the message says what happened, what is intact and the fix;
    the command line prints it as one line and exits with code 2."""


class RewardError(RuntimeError):
    """The host reward failed outside the per-item verifier (a bug or a broken task):
    the message says at which RL iteration and why."""
