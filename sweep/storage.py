"""Study storage: a URL -> an Optuna `RDBStorage` with engine settings that suit the database.

SQLite (the default, `sqlite:///sweep.db`) runs in WAL mode with a busy timeout, so several local
processes can read and write one file. PostgreSQL (`postgresql+psycopg://user:pass@host/db`) gets a
small pool that pings before use and recycles connections, and a connect timeout so an unreachable
server is reported in seconds, not minutes.

This module needs only Optuna and SQLAlchemy: `sweep status` and `sweep studies` never import torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url

from sweep.errors import ConfigError, DatabaseUnreachable, StorageError

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///sweep.db"
STORAGE_ENV = "SWEEP_STORAGE"
ARTIFACTS_DIRNAME = "sweep-artifacts"
CHECKPOINTS_DIRNAME = "checkpoints"

# Seconds a connection attempt may take. psycopg tries each address of a host name in turn
# (localhost: ::1 then 127.0.0.1), so 4 s keeps the worst case of one host under 10 s.
CONNECT_TIMEOUT_S = 4
# Seconds SQLite waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60.0

_SUPPORTED = ("sqlite", "postgresql", "mysql")


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


def resolve_storage_url(option: str | None, study_file_value: str | None = None) -> str:
    """Pick the storage URL: ``--storage``, else ``$SWEEP_STORAGE``, else the study file's
    ``storage:``, else ``sqlite:///sweep.db`` (in the current directory)."""
    for candidate in (option, os.environ.get(STORAGE_ENV), study_file_value):
        if candidate:
            return candidate
    return DEFAULT_STORAGE


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


def parse_storage_url(url: str) -> URL:
    """Parse and check a storage URL; raises StorageError naming what is wrong."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise StorageError(
            redact(
                f"malformed storage URL {url!r}: {e} "
                "(expected e.g. sqlite:///sweep.db or postgresql+psycopg://user:pass@host/db)"
            )
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        raise StorageError(
            f"unsupported storage URL {redact(url)!r}: database kind {backend!r} "
            f"(use sqlite:///FILE or postgresql+psycopg://user:pass@host/db)"
        )
    if "@" in (parsed.host or ""):
        # The URL parser took the first '@' as the end of the password: the rest of the
        # password is now the "host", and would be shown in every connection error.
        raise StorageError(
            f"storage URL {redact(url)!r}: the user name or password holds an '@'; write it "
            "as %40 (e.g. postgresql+psycopg://user:p%40ss@host/db)"
        )
    _check_driver(url, parsed)
    if backend == "sqlite" and parsed.database == "":
        raise StorageError(
            f"storage URL {redact(url)!r} names no SQLite file (e.g. sqlite:///sweep.db)"
        )
    if backend != "sqlite" and not parsed.host and not parsed.query.get("host"):
        raise StorageError(f"storage URL {redact(url)!r} names no host")
    return parsed


# The package that provides each driver a URL may name, for the message when it is missing.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "pg8000": "pg8000",
    "pymysql": "pymysql",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
}


def _check_driver(url: str, parsed: URL) -> None:
    """StorageError naming the package to install when the URL's driver is not there.

    Loading the dialect is not enough: SQLAlchemy imports the driver itself only when the first
    engine is made, which would surface as an ImportError traceback.
    """
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except Exception as e:  # NoSuchModuleError for an unknown driver, ImportError for a missing one
        driver = parsed.get_driver_name()
        package = _DRIVER_PACKAGES.get(driver)
        hint = f"pip install {package}" if package else "install its package"
        if parsed.get_backend_name() == "postgresql" and driver != "psycopg":
            hint += ", or use postgresql+psycopg://, which sweep installs"
        raise StorageError(
            f"storage URL {redact(url)!r}: the database driver {driver!r} is not available "
            f"({type(e).__name__}); {hint}"
        ) from None


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (relative to the current directory), else None.

    In-memory SQLite (``sqlite://`` or ``:memory:``) and other databases give None.
    """
    parsed = parse_storage_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def storage_exists(url: str) -> bool:
    """False only for a SQLite file that does not exist yet (opening it would create it)."""
    path = sqlite_path(url)
    return path is None or path.exists()


def default_artifacts_dir(url: str) -> Path:
    """Where kept models go: next to the SQLite file, else ``./sweep-artifacts``."""
    path = sqlite_path(url)
    base = path.resolve().parent if path is not None else Path.cwd()
    return base / ARTIFACTS_DIRNAME


def default_checkpoint_dir(url: str) -> Path:
    """Where running trials keep checkpoints: ``checkpoints/`` next to the SQLite file, else
    ``./checkpoints`` (on a cluster, pass a shared path: a retry may run on another machine)."""
    path = sqlite_path(url)
    base = path.resolve().parent if path is not None else Path.cwd()
    return base / CHECKPOINTS_DIRNAME


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
    from sweep._resilient_storage import Retrying

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
    being created. Heartbeats are set up by the trial loop that needs them (sweep.session).
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
        from sweep._resilient_storage import is_transient

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


CONFIRM_SUFFIX = ".confirm"  # `sweep confirm NAME` stores its runs in the study NAME.confirm


def companion_name(name: str) -> str:
    """The name of the study that holds NAME's confirmation runs (sweep.confirm)."""
    return name + CONFIRM_SUFFIX


def is_companion(name: str, names: Sequence[str]) -> bool:
    """Whether study `name` is the confirmation study of another study in `names`."""
    return name.endswith(CONFIRM_SUFFIX) and name.removesuffix(CONFIRM_SUFFIX) in names


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
