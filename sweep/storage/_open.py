"""Opening a study storage: a URL -> an Optuna `RDBStorage` with engine settings that suit the
database, and creating or continuing a study in it.

SQLite (the default, `sqlite:///sweep.db`) runs in WAL mode with a busy timeout, so several local
processes can read and write one file. PostgreSQL (`postgresql+psycopg://user:pass@host/db`) gets a
small pool that pings before use and recycles connections, and a connect timeout so an unreachable
server is reported in seconds, not minutes.

Needs only Optuna and SQLAlchemy: `sweep status` and `sweep studies` never import torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import URL

from sweep.errors import ConfigError, DatabaseUnreachable, StorageError, redact
from sweep.storage._retry import Retrying, is_transient
from sweep.storage._urls import parse_storage_url, sqlite_path

__all__ = [
    "check_storage",
    "close_storage",
    "open_storage",
    "open_study",
    "study_names",
]

logger = logging.getLogger(__name__)

# Seconds a connection attempt may take. psycopg tries each address of a host name in turn
# (localhost: ::1 then 127.0.0.1), so 4 s keeps the worst case of one host under 10 s.
CONNECT_TIMEOUT_S = 4
# Seconds SQLite waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60.0


class _WalConnection(sqlite3.Connection):
    """A sqlite3 connection that switches the database to WAL as soon as it opens.

    WAL lets readers (``sweep status``) run while a worker writes, and several local processes
    write in turn without "database is locked" errors (together with the busy timeout). Passing
    this class as ``factory`` in ``connect_args`` keeps the setting local to our engines, unlike
    a global SQLAlchemy event listener.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode and avoids an fsync per commit,
        # which keeps the per-trial storage cost in the milliseconds.
        self.execute("PRAGMA synchronous=NORMAL")


def _engine_kwargs(parsed: URL) -> dict[str, Any]:
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {
            "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "factory": _WalConnection},
        }
    kwargs: dict[str, Any] = {
        # A worker may sit in a fine-tune for an hour between writes: ping before use and
        # recycle connections so a server-side idle timeout never surfaces as an error.
        "pool_pre_ping": True,
        "pool_recycle": 300,
        # One process writes one trial at a time; many workers share one server.
        "pool_size": 2,
        "max_overflow": 2,
    }
    # Both psycopg and the MySQL drivers take connect_timeout (seconds).
    kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_storage(url: str, *, wait: float = 0.0) -> None:
    """Fail fast, writing nothing: the URL parses, the server answers, the SQLite file (if it
    exists) is a database. `sweep run` calls this before the slow data preparation.

    A server that cannot be reached is tried again for up to `wait` seconds (a worker started
    while the database restarts rides it out, as every later storage call does); then
    DatabaseUnreachable. A server that answers and refuses (wrong password, no such database)
    is a StorageError at once.
    """
    parsed = parse_storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.is_dir():
            raise StorageError(f"storage {redact(url)}: directory {path.parent} does not exist")
        if path.exists():
            try:
                # Read-only: must not switch journal modes or create anything.
                with contextlib.closing(
                    sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=10)
                ) as conn:
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as e:
                raise StorageError(f"cannot open storage {redact(url)} ({path}): {e}") from None
        return
    if parsed.get_backend_name() == "sqlite":
        return  # in-memory

    def connect() -> None:
        engine = sqlalchemy.create_engine(parsed, **_engine_kwargs(parsed))
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()

    try:
        Retrying(give_up_after=wait).call(connect)
    except DatabaseUnreachable as e:
        cause = e.__cause__ or e
        raise DatabaseUnreachable(
            f"cannot open storage {redact(url)} ({_where(parsed, path)}): "
            f"{redact(_first_line(cause))}" + (f" (tried for {wait:.0f} s)" if wait else "")
        ) from None
    except sqlalchemy.exc.DBAPIError as e:
        raise StorageError(
            f"cannot open storage {redact(url)} ({_where(parsed, path)}): {redact(_first_line(e))}"
        ) from None


def _where(parsed: URL, path: Path | None) -> str:
    return f"{parsed.host}:{parsed.port or 'default port'}" if parsed.host else str(path)


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """Open (and for a new database, initialise) the Optuna storage at ``url``.

    must_exist: for read-only commands; a SQLite file that does not exist is an error instead of
    being created. Heartbeats are set up by the trial loop that needs them (sweep.runner.session).
    Raises StorageError for a malformed URL, a missing file or directory, a database that cannot
    be reached (within ~10 s), or one written by an incompatible Optuna version.
    """
    parsed = parse_storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not path.exists() and must_exist:
            raise StorageError(f"no study database at {path} (storage {redact(url)})")
        if not path.parent.is_dir():
            raise StorageError(f"storage {redact(url)}: directory {path.parent} does not exist")
        if not path.exists():
            _create_sqlite(path, parsed)
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(parsed))
    except sqlalchemy.exc.DBAPIError as e:
        error = DatabaseUnreachable if is_transient(e) else StorageError
        raise error(
            f"cannot open storage {redact(url)} ({_where(parsed, path)}): {redact(_first_line(e))}"
        ) from None
    except RuntimeError as e:  # optuna's schema-version mismatch
        raise StorageError(f"storage {redact(url)}: {redact(_first_line(e))}") from None
    return storage


def _create_sqlite(path: Path, parsed: URL) -> None:
    """Make a new SQLite database at `path` whole, or not at all.

    Optuna creates the tables and stamps the schema version when it opens an empty file, so a
    `sweep status` that opened the file of a `sweep run` just starting would race it on the
    same inserts (and one of them fails on alembic's UNIQUE version row). So the database is
    initialised under a private name and hard-linked into place: others see no file, or a whole
    database. Of two processes creating the same file the first link wins, and the other opens
    that one.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.init")
    try:
        try:
            storage = optuna.storages.RDBStorage(
                parsed.set(database=str(temporary)).render_as_string(hide_password=False),
                engine_kwargs=_engine_kwargs(parsed),
            )
        except sqlalchemy.exc.DBAPIError as e:
            raise StorageError(f"cannot create storage {path}: {_first_line(e)}") from None
        close_storage(storage)  # (the last connection closing folds the WAL into the file)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        for leftover in (temporary, *(Path(f"{temporary}{s}") for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of the studies in the storage, oldest first."""
    return [s.study_name for s in storage.get_all_studies()]


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Release the storage's connections (SQLite: lets WAL fold back into the main file)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        storage.remove_session()
        engine.dispose()


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    direction: str | Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    signature: dict[str, Any],
    describe_change: Callable[[dict[str, Any], dict[str, Any]], str | None],
    user_attrs: Mapping[str, Any],
    enqueue: Sequence[Mapping[str, Any]] = (),
    signature_attr: str = "space_signature",
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it to continue; returns (study, created).

    `direction`: one ("minimize") or one per objective (["minimize", "minimize"]: a study
    with cost as a second objective). Continuing is refused (ConfigError, nothing written) when
    the stored search space or the directions differ from these. A new study gets `user_attrs`
    and its `enqueue` entries (only then, so continuing never queues them twice).

    Many workers may start at once: one creates the study (the database refuses a second study of
    the same name), the others load it. The creator writes the search-space signature last, after
    the queued trials, so a worker that finds the signature finds a complete study.
    """
    directions = [direction] if isinstance(direction, str) else list(direction)
    if name not in study_names(storage):
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                directions=directions,
                sampler=sampler,
                pruner=pruner,
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago: load it below
        else:
            for key, value in user_attrs.items():
                study.set_user_attr(key, value)
            for params in enqueue:
                study.enqueue_trial(dict(params), skip_if_exists=True)
            study.set_user_attr(signature_attr, signature)
            return study, True
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    old = _wait_for_attr(study, signature_attr)
    if old is None:
        raise ConfigError(
            f"study {name!r} exists in this storage but was not created by sweep; "
            "choose another name with --name"
        )
    change = describe_change(old, signature)
    if change:
        raise ConfigError(
            f"study {name!r} was created with a different search space ({change}); "
            "run it with the old study file, or start a new study with --name"
        )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ConfigError(
            f"study {name!r} {_objectives_text(stored)}, the study file says "
            f"{_objectives_text(directions, file=True)}; start a new study with --name"
        )
    return study, False


def _objectives_text(directions: Sequence[str], *, file: bool = False) -> str:
    """ "is minimized" / "minimize", or for two objectives (metric and cost) what they are."""
    if len(directions) == 1:
        return directions[0] if file else f"is {directions[0]}d"
    text = f"{directions[0]} the metric and {' and '.join(directions[1:])} cost"
    return text if file else f"has two objectives ({text})"


CREATION_WAIT_S = 30.0


def _wait_for_attr(study: optuna.Study, key: str) -> Any:
    """The study's user attr `key`; while a fresh study (no trials yet) lacks it, wait a little
    for the worker creating it to write it. None if it never comes."""
    deadline = time.monotonic() + CREATION_WAIT_S
    while True:
        value = study.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        if study.get_trials(deepcopy=False):
            return None  # an older study without it: not one of ours
        time.sleep(0.2)
