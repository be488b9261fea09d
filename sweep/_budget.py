"""The study-wide trial budget, honoured exactly by any number of workers.

Optuna's way (each worker counts finished trials after its own trial, `MaxTrialsCallback`) lets K
workers start K trials when one slot is left: up to K-1 trials too many. Here a worker *claims*
its next trial under a lock held by one worker at a time, across processes and machines:

    counted = finished trials that count (see sweep.status.counts_towards_budget)
    running = trials being run right now
    counted >= budget            -> done: the worker stops
    counted + running >= budget  -> wait: a running trial may still end without counting
                                    (preempted, worker lost) and free its slot
    else                         -> take a queued trial (an enqueued one or a retry), else a new one

The lock is a PostgreSQL transaction-level advisory lock (released by the server when the
transaction ends or the connection dies) or, for a SQLite file, an flock on a file beside it
(released by the kernel when the process dies). Nothing stays locked after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from sweep._worker_storage import WorkerStorage
from sweep.status import counts_towards_budget

logger = logging.getLogger(__name__)

Lock = Callable[[], contextlib.AbstractContextManager[Any]]


@dataclass(frozen=True)
class Claim:
    """What a worker may do next: run `trial_id`, wait, or stop (`done`)."""

    trial_id: int | None
    done: bool = False
    created: bool = False  # a new empty trial (else one taken from the queue)
    counted: int = 0
    running: int = 0


def advisory_key(study_name: str) -> int:
    """A stable signed 64-bit key for the study's advisory lock."""
    digest = hashlib.blake2b(f"sweep-budget:{study_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def budget_lock(rdb: optuna.storages.RDBStorage, study_name: str) -> Lock:
    """A context-manager factory that serialises budget claims of `study_name` between workers."""
    backend = rdb.engine.url.get_backend_name()
    if backend == "postgresql":
        return _postgres_lock(rdb.engine, advisory_key(study_name))
    if backend == "sqlite" and rdb.engine.url.database not in (None, "", ":memory:"):
        return _file_lock(Path(f"{rdb.engine.url.database}.sweep-lock"))
    logger.warning(
        "no cross-process lock for %s storage: the trial budget is exact only within one process",
        backend,
    )
    return in_process_lock()


def _postgres_lock(engine: sqlalchemy.Engine, key: int) -> Lock:
    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        # The lock lives as long as this transaction; commit or rollback (or a dropped
        # connection) releases it.
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield

    return lock


def _file_lock(path: Path) -> Lock:
    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        with open(path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    return lock


def in_process_lock() -> Lock:
    """A lock for storages without a database to lock (in-memory studies): this process only."""
    mutex = threading.Lock()

    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        with mutex:
            yield

    return lock


_ALWAYS_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def claim_trial(storage: WorkerStorage, study_id: int, n_trials: int, lock: Lock) -> Claim:
    """Decide, under the lock, whether this worker may start a trial, and create or take it.

    `storage` must not retry by itself: if the database goes away halfway, the whole claim is
    redone under a new lock (the caller retries it).
    """
    # Held by one worker at a time: keep it short. COMPLETE and PRUNED trials count by their
    # state alone; only FAILed ones need their end reason, and those are rare.
    with lock():
        active = storage.states(study_id)
        counted = sum(1 for _, _, state in active if state in _ALWAYS_COUNTED)
        failed = {tid for tid, _, state in active if state == TrialState.FAIL}
        counted += sum(
            1
            for t in storage.fetch_finished(
                study_id, failed, newest=max((tid for tid, _, _ in active), default=0)
            )
            if counts_towards_budget(t)
        )
        running = sum(1 for _, _, state in active if state == TrialState.RUNNING)
        if counted >= n_trials:
            return Claim(None, done=True, counted=counted, running=running)
        if counted + running >= n_trials:
            return Claim(None, counted=counted, running=running)
        waiting = sorted(
            (number, tid) for tid, number, state in active if state == TrialState.WAITING
        )
        for _, trial_id in waiting:
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return Claim(trial_id, counted=counted, running=running)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        trial_id = storage.create_new_trial(study_id)
        return Claim(trial_id, created=True, counted=counted, running=running)
