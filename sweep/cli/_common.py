"""What every `sweep` command shares: the storage options, user errors as one line and their exit
code, the consoles and logging, and picking a study from a storage."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sweep.errors import (
    ConfigError,
    ExitCode,
    StorageError,
    SweepError,
    find_infrastructure_errno,
)
from sweep.storage import open_storage, redact, resolve_storage_url, study_names
from sweep.study import is_companion

logger = logging.getLogger("sweep")

F = TypeVar("F", bound=Callable[..., Any])

StudyNameArgument = Annotated[
    str | None,
    typer.Argument(help="Study name (default: the only study in the storage).", show_default=False),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Database URL (default: $SWEEP_STORAGE, then the study file's storage:, "
        "then sqlite:///sweep.db).",
        show_default=False,
    ),
]
ArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-dir",
        help="Where kept models go (default: sweep-artifacts/ next to the SQLite file, "
        "else ./sweep-artifacts).",
        show_default=False,
    ),
]


def one_line(error: BaseException) -> str:
    return redact(" ".join(str(error).split()) or type(error).__name__)


def user_errors(command: F) -> F:
    """Turn a SweepError into `error: <message>` on stderr and its exit code (2 for a mistake in
    the input, 3 for the infrastructure); a full disk met anywhere counts as the latter."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SweepError as e:
            typer.echo(f"error: {one_line(e)}", err=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:
            if find_infrastructure_errno(e) is None:
                raise
            typer.echo(f"error: {one_line(e)}", err=True)
            raise typer.Exit(ExitCode.INFRASTRUCTURE) from None

    return wrapper  # type: ignore[return-value]


class _Redacting(logging.Filter):
    """Hide passwords in log records (a storage URL in a driver's message, say)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def consoles() -> tuple[Any, Any]:
    """(stdout, stderr) Rich consoles, made per command so that test runners' streams are used."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # Piped output: Rich would assume 80 columns and fold the tables; a log or `less` is wider.
        out = Console(highlight=False, soft_wrap=True, width=200)
    # soft_wrap: a trial line stays one line whatever the width.
    return out, Console(stderr=True, highlight=False, soft_wrap=True)


def setup_logging(err_console: Any) -> None:
    import optuna
    from rich.logging import RichHandler

    # Optuna's own per-trial log lines duplicate ours, and its warning for an interrupted trial
    # carries a traceback: keep only its errors.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # transformers draws a progress bar for every save_pretrained (each improving epoch) and
    # from_pretrained: noise between our trial lines.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not logger.handlers:
        handler = RichHandler(console=err_console, show_time=False, show_path=False)
        handler.addFilter(_Redacting())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def read_storage(storage: str | None) -> Any:
    """Open the storage for reading: never creates a SQLite file."""
    return open_storage(resolve_storage_url(storage), must_exist=True)


def pick_study(opened: Any, name: str | None, url: str) -> Any:
    """The study NAME of the opened storage, or its only study; a SweepError naming the others."""
    import difflib

    import optuna

    names = study_names(opened)
    if name is None:
        # The only study, not counting confirmation studies: after `sweep confirm` the
        # storage holds NAME and NAME.confirm, and a command without a name still means NAME.
        own = [n for n in names if not is_companion(n, names)]
        if len(own) == 1:
            name = own[0]
        elif not names:
            raise StorageError(f"no studies in {redact(url)}")
        else:
            raise ConfigError(
                f"{redact(url)} holds {len(names)} studies ({', '.join(names)}); name one"
            )
    elif name not in names:
        near = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f" (studies: {', '.join(names)})"
        raise StorageError(f"no study named {name!r} in {redact(url)}{hint}")
    return optuna.load_study(study_name=name, storage=opened)
