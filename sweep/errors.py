"""The one exception root of sweep.

Every mistake a user can make (a bad study file, missing data, an unreachable database) raises a
subclass of `SweepError` whose message says what is wrong and where. The CLI prints that message as
one line and exits with code 2; anything else is our bug and keeps its traceback.
"""


class SweepError(Exception):
    """A user-facing error: its message is printed as one line, exit code 2."""


class ConfigError(SweepError):
    """A study file or a command-line option is invalid."""


class DataError(SweepError):
    """A dataset cannot be read or is unusable (missing column, single class, ...)."""


class ModelError(SweepError):
    """A model size is unknown or a pretrained model cannot be loaded."""


class StorageError(SweepError):
    """The study storage is malformed, unreachable, or holds an incompatible study."""
