"""User-facing errors: the CLI prints their message on one line and exits non-zero, no traceback."""


class MimrecError(Exception):
    """A mistake in the user's input (config, data file, request): the message says what and where."""


class ConfigError(MimrecError):
    """A config key is unknown, mistyped, or has a value out of range."""


class DataError(MimrecError):
    """A data file is missing, malformed, or breaks the documented schema."""
