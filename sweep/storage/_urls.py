"""Storage URLs: which one a command uses, whether it is well-formed, and the folders that
go with it (kept models and checkpoints next to a SQLite file).

Every message naming a URL hides its password (sweep.errors.redact).
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import URL, make_url

from sweep.errors import StorageError, redact

__all__ = [
    "ARTIFACTS_DIRNAME",
    "CHECKPOINTS_DIRNAME",
    "DEFAULT_STORAGE",
    "STORAGE_ENV",
    "default_artifacts_dir",
    "default_checkpoint_dir",
    "parse_storage_url",
    "resolve_storage_url",
    "sqlite_path",
    "storage_exists",
]

DEFAULT_STORAGE = "sqlite:///sweep.db"
STORAGE_ENV = "SWEEP_STORAGE"
ARTIFACTS_DIRNAME = "sweep-artifacts"
CHECKPOINTS_DIRNAME = "checkpoints"

_SUPPORTED = ("sqlite", "postgresql", "mysql")


def resolve_storage_url(option: str | None, study_file_value: str | None = None) -> str:
    """Pick the storage URL: ``--storage``, else ``$SWEEP_STORAGE``, else the study file's
    ``storage:``, else ``sqlite:///sweep.db`` (in the current directory)."""
    for candidate in (option, os.environ.get(STORAGE_ENV), study_file_value):
        if candidate:
            return candidate
    return DEFAULT_STORAGE


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
