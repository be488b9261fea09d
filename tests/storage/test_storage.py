"""Storage URLs -> RDBStorage: resolution, engine settings, errors, creating and continuing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
from sqlalchemy import text

from sweep.errors import ConfigError, DatabaseUnreachable, StorageError
from sweep.storage import (
    DEFAULT_STORAGE,
    check_storage,
    close_storage,
    default_artifacts_dir,
    open_storage,
    open_study,
    parse_storage_url,
    redact,
    resolve_storage_url,
    storage_exists,
    study_names,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    assert resolve_storage_url(None, None) == DEFAULT_STORAGE == "sqlite:///sweep.db"
    assert resolve_storage_url(None, "sqlite:///file.db") == "sqlite:///file.db"
    monkeypatch.setenv("SWEEP_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(None, "sqlite:///file.db") == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///opt.db", "sqlite:///file.db") == "sqlite:///opt.db"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", "malformed storage URL"),
        ("sqlite:/one-slash.db", "malformed storage URL"),
        ("postgresql+psycopg://u:p@host:notaport/db", "malformed storage URL"),
        ("redis://localhost/0", "unsupported storage URL"),
        ("postgresql+nosuchdriver://u@h/db", "driver 'nosuchdriver' is not available"),
        # A dialect SQLAlchemy knows whose driver is not installed: one line, not ImportError.
        ("postgresql+psycopg2://u:pw@h/db", "pip install psycopg2-binary"),
        ("mysql+pymysql://u:pw@h/db", "pip install pymysql"),
        ("sqlite:///", "names no SQLite file"),
        ("postgresql+psycopg:///db", "names no host"),
    ],
)
def test_malformed_urls(url: str, words: str) -> None:
    with pytest.raises(StorageError) as info:
        parse_storage_url(url)
    message = str(info.value)
    assert words in message
    assert "\n" not in message


def test_redact_hides_password() -> None:
    assert "secret" not in redact("postgresql+psycopg://me:secret@db.example/sweep")
    assert "me:***@db.example" in redact("postgresql+psycopg://me:secret@db.example/sweep")


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url)
    try:
        with storage.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
    finally:
        close_storage(storage)


def test_missing_sqlite_file_is_not_created_for_reading(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    assert not storage_exists(f"sqlite:///{path}")
    with pytest.raises(StorageError, match="no study database"):
        open_storage(f"sqlite:///{path}", must_exist=True)
    assert not path.exists()


def _race_to_open(url: str, creators: int = 3, readers: int = 3) -> list[BaseException]:
    """Open a new SQLite `url` from creator and polling reader threads at once; their errors."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(creators + readers)

    def create() -> None:
        start.wait()
        try:
            close_storage(open_storage(url))
        except BaseException as error:
            errors.append(error)

    def read() -> None:
        start.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                close_storage(open_storage(url, must_exist=True))
                return
            except StorageError as error:
                if "no study database" not in str(error):
                    errors.append(error)
                    return
            time.sleep(0.005)
        errors.append(AssertionError(f"{url} never became readable"))

    threads = [threading.Thread(target=create) for _ in range(creators)]
    threads += [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_a_new_sqlite_file_appears_whole_to_readers_and_racing_creators(tmp_path: Path) -> None:
    """`sweep status` polling while `sweep run` creates the file, and runs starting together:
    nobody sees half-made tables (Optuna's initialisation would race on alembic's version row)."""
    for round_ in range(4):
        errors = _race_to_open(f"sqlite:///{tmp_path / f'race{round_}.db'}")
        assert not errors, errors
    # No private file of a creator is left behind (only the databases and their WAL files).
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith("race")]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'nope' / 's.db'}")
    assert not (tmp_path / "nope").exists()


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    before = path.read_bytes()
    with pytest.raises(StorageError, match="cannot open storage"):
        check_storage(f"sqlite:///{path}")
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_check_storage_writes_nothing(tmp_path: Path, digest) -> None:
    path = tmp_path / "s.db"
    check_storage(f"sqlite:///{path}")
    assert not path.exists()
    storage = open_storage(f"sqlite:///{path}")
    optuna.create_study(storage=storage, study_name="s")
    close_storage(storage)
    before = digest(path)
    check_storage(f"sqlite:///{path}")
    assert digest(path) == before
    with pytest.raises(StorageError, match="does not exist"):
        check_storage(f"sqlite:///{tmp_path / 'nope' / 's.db'}")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_unreachable_postgres_fails_fast(host: str) -> None:
    for attempt in (check_storage, open_storage):
        started = time.monotonic()
        # An outage, not a mistake in the URL: the infrastructure's exit code (3), not 2.
        with pytest.raises(DatabaseUnreachable) as info:
            attempt(f"postgresql+psycopg://sweep:secret@{host}:1/sweep")
        assert time.monotonic() - started < 10
        message = str(info.value)
        assert "cannot open storage" in message and f"{host}:1" in message
        assert "secret" not in message and "\n" not in message


def test_artifacts_dir_next_to_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        default_artifacts_dir(f"sqlite:///{tmp_path}/db/x.db")
        == tmp_path / "db" / "sweep-artifacts"
    )
    assert default_artifacts_dir("sqlite:///x.db") == tmp_path / "sweep-artifacts"
    assert default_artifacts_dir("postgresql+psycopg://u@h/db") == tmp_path / "sweep-artifacts"


def _same(old: dict, new: dict) -> str | None:
    return None if old == new else f"space changed: {old} -> {new}"


def _open(storage, name="s", signature=None, direction="minimize", enqueue=()):
    return open_study(
        storage,
        name,
        direction=direction,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
        signature=signature or {"x": [0, 1]},
        describe_change=_same,
        user_attrs={"config": {"name": name}},
        enqueue=enqueue,
    )


def test_open_study_creates_then_continues(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    try:
        study, created = _open(storage, enqueue=[{"x": 0.5}])
        assert created
        assert study.user_attrs["space_signature"] == {"x": [0, 1]}
        assert study.user_attrs["config"] == {"name": "s"}
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert study.trials[0].params == {"x": 0.5}  # the enqueued point runs first

        again, created = _open(storage, enqueue=[{"x": 0.5}])
        assert not created
        assert len(again.trials) == 2
        assert not [t for t in again.trials if t.state == optuna.trial.TrialState.WAITING]
    finally:
        close_storage(storage)


def test_open_study_refuses_changed_space_and_direction(tmp_path: Path, digest) -> None:
    path = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{path}")
    _open(storage)
    close_storage(storage)
    before = digest(path)

    storage = open_storage(f"sqlite:///{path}")
    try:
        with pytest.raises(ConfigError, match="different search space"):
            _open(storage, signature={"x": [0, 2]})
        with pytest.raises(ConfigError, match="minimized"):
            _open(storage, direction="maximize")
    finally:
        close_storage(storage)
    assert digest(path) == before


def test_foreign_study_is_not_taken_over(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    try:
        optuna.create_study(storage=storage, study_name="s")
        with pytest.raises(ConfigError, match="not created by sweep"):
            _open(storage)
    finally:
        close_storage(storage)


WRITER = textwrap.dedent(
    """
    import sys, optuna
    from sweep.storage import open_storage, close_storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(sys.argv[1])
    study = optuna.load_study(study_name="shared", storage=storage)
    def objective(trial):
        trial.set_user_attr("worker", sys.argv[2])
        return trial.suggest_float("x", 0, 1)
    study.optimize(objective, n_trials=15)
    close_storage(storage)
    """
)


@pytest.mark.slow
def test_several_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="shared")
    close_storage(storage)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(i)], stderr=subprocess.PIPE)
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    storage = open_storage(url, must_exist=True)
    try:
        trials = optuna.load_study(study_name="shared", storage=storage).trials
        assert len(trials) == 45
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        assert {t.user_attrs["worker"] for t in trials} == {"0", "1", "2"}
    finally:
        close_storage(storage)


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("SWEEP_TEST_POSTGRES_URL"), reason="SWEEP_TEST_POSTGRES_URL not set"
)
def test_postgres_roundtrip() -> None:
    url = os.environ["SWEEP_TEST_POSTGRES_URL"]
    storage = open_storage(url)
    name = f"test-{uuid.uuid4().hex[:8]}"
    try:
        assert storage.engine.pool.size() == 2
        study, created = _open(storage, name=name)
        assert created and name in study_names(storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        again, created = _open(storage, name=name)
        assert not created and len(again.trials) == 3
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        close_storage(storage)
