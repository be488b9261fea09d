"""The one exception root of sweep, and the exit codes of the `sweep` command.

Every mistake a user can make (a bad study file, missing data, a malformed storage URL) raises a
subclass of `SweepError` whose message says what is wrong and where. The CLI prints that message as
one line and exits with the error's `exit_code`: `ExitCode.USER_ERROR` (2) for a mistake in the
input, `ExitCode.INFRASTRUCTURE` (3) for a machine that failed the sweep (a database that stayed
unreachable, a full disk). Anything else is our bug, keeps its traceback and exits 1.

Infrastructure failures have their own code because a scheduler must treat them differently: a
mistake in the input fails the same way on every retry (a Kubernetes Job fails at once on 2),
while a database outage or a full disk is worth another try later or elsewhere.
"""

from __future__ import annotations

import enum
import errno
import re

__all__ = [
    "INFRASTRUCTURE_ERRNOS",
    "ConfigError",
    "DataError",
    "DatabaseUnreachable",
    "DiskError",
    "ExitCode",
    "InfrastructureError",
    "ModelError",
    "StorageError",
    "SweepError",
    "find_infrastructure_errno",
    "first_line",
    "redact",
]


class ExitCode(enum.IntEnum):
    """What `sweep`'s exit status means (documented in the README; the launchers rely on it)."""

    OK = 0
    BUG = 1  # a crash of ours: the traceback is printed
    USER_ERROR = 2  # a mistake in the input: retrying the same command fails the same way
    INFRASTRUCTURE = 3  # the database or the disk failed: retrying later or elsewhere may work
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class SweepError(Exception):
    """A user-facing error: its message is printed as one line, exit code `exit_code`."""

    exit_code: ExitCode = ExitCode.USER_ERROR


class ConfigError(SweepError):
    """A study file or a command-line option is invalid."""


class DataError(SweepError):
    """A dataset cannot be read or is unusable (missing column, single class, ...)."""


class ModelError(SweepError):
    """A model size is unknown or a pretrained model cannot be loaded."""


class StorageError(SweepError):
    """The study storage is malformed or holds an incompatible study (not an outage)."""


class InfrastructureError(SweepError):
    """The machine failed the sweep, not its input: a trial that meets one is run again."""

    exit_code = ExitCode.INFRASTRUCTURE


class DatabaseUnreachable(InfrastructureError):
    """The database could not be reached for longer than the worker was told to wait."""


class DiskError(InfrastructureError):
    """A checkpoint, a kept model or a cache entry could not be written (disk full, I/O error)."""


# Errors of the file system that say nothing about the trial being run: its files just could not
# be written there.
INFRASTRUCTURE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def find_infrastructure_errno(error: BaseException) -> OSError | None:
    """The OSError with an errno of INFRASTRUCTURE_ERRNOS in `error`'s cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in INFRASTRUCTURE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def first_line(error: BaseException) -> str:
    """`Type: first line of the message` (or just the type), for a one-line record of an error."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


# The credentials a database URL (or a message quoting one) may carry: the password of its
# user-info part, password-like query parameters, and `password=...` of a keyword DSN.
_URL_TOKEN = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s'"]*)""")
_SECRET_PARAM = re.compile(
    r"(?P<key>(?:^|[?&;\s])(?:password|passwd|pwd|sslpassword|sslkey_password)\s*=\s*)"
    r"(?P<value>[^&;\s'\"]*)",
    re.IGNORECASE,
)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` (a URL, or any message quoting one) with every password in it replaced by ***.

    Works on the raw text, not on a parsed URL, so it also hides the password of a malformed URL
    and of one whose password holds an unescaped '@' (everything up to the last '@' of the
    user-info part is credentials). Every message, log line and stored attribute that may name
    a storage URL goes through here.
    """
    text = _URL_TOKEN.sub(_redact_url, str(text))
    return _SECRET_PARAM.sub(lambda m: m.group("key") + REDACTED, text)


def _redact_url(match: re.Match[str]) -> str:
    rest = match.group("rest")
    at = rest.rfind("@")
    if at > 0:
        userinfo = rest[:at]
        user, colon, _password = userinfo.partition(":")
        if colon:
            rest = f"{user}:{REDACTED}{rest[at:]}"
    return match.group("scheme") + rest
