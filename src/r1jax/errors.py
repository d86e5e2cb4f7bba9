"""Exceptions shared by the library and the command line (kept import-light: the reward
worker processes import the entry-point module, so it must not pull in JAX)."""


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the fix."""
