"""The project's exception root. Every error a user can cause derives from :class:`WspError`."""


class WspError(Exception):
    """Root of every error this project raises on purpose.

    The message is written for the person who caused it: the CLI prints it as one line
    and exits non-zero, services turn it into a JSON error.
    """


class AudioError(WspError):
    """Audio that cannot be used: unreadable file, empty audio, a shape we cannot turn into mono."""


class ModelError(WspError):
    """The speech model cannot be found, assembled or loaded."""


class ConfigError(WspError):
    """A setting or option has a value that makes no sense."""
