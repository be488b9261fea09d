"""The study-wide trial budget, honoured exactly by any number of workers.

Optuna's way (each worker counts finished trials after its own trial, `MaxTrialsCallback`) lets K
workers start K trials when one slot is left: up to K-1 trials too many. Here a worker *claims*
its next trial under a lock held by one worker at a time, across processes and machines:

    counted = finished trials that count (see sweep.study.counts_towards_budget)
    running = trials being run right now
    counted >= budget            -> done: the worker stops
    counted + running >= budget  -> wait: a running trial may still end without counting
                                    (preempted, worker lost) and free its slot
    else                         -> take a queued trial (an enqueued one or a retry), else a new one

The lock is a PostgreSQL transaction-level advisory lock (released by the server when the
transaction ends or the connection dies) or, for a SQLite file, an flock on a file beside it
(released by the kernel when the process dies). Nothing stays locked after a crash.

A claim is one transaction: the trial it creates or takes from the queue, marked with the claim's
token, and the trial's first heartbeat are committed together. If the database goes away halfway
the worker redoes the claim (the retrying storage); the redo first looks for a trial with its
token, since the commit may have landed with only its answer lost. So an outage never leaves a
RUNNING trial that no worker runs, and a queued trial is never taken twice or dropped. A worker
killed right after its claim leaves a trial with a heartbeat: found lost, and retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.trial import TrialState

from sweep.storage._optuna_compat import (
    StudyRow,
    TrialHeartbeatRow,
    TrialRow,
    TrialSystemAttributeRow,
)
from sweep.storage._worker import WorkerStorage
from sweep.study import SystemKey, counts_towards_budget

logger = logging.getLogger(__name__)

# A claim's transaction: an ORM session whose transaction holds the study's claim lock and
# commits when the block ends.
Lock = Callable[[], contextlib.AbstractContextManager[sqlalchemy.orm.Session]]


@dataclass(frozen=True)
class Claim:
    """What a worker may do next: run `trial_id`, wait, or stop (`done`)."""

    trial_id: int | None
    done: bool = False
    created: bool = False  # a new empty trial (else one taken from the queue)
    number: int | None = None  # the trial's number, when known without a query
    counted: int = 0
    running: int = 0


def advisory_key(study_name: str) -> int:
    """A stable signed 64-bit key for the study's advisory lock."""
    digest = hashlib.blake2b(f"sweep-budget:{study_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def budget_lock(rdb: optuna.storages.RDBStorage, study_name: str) -> Lock:
    """A factory of claim transactions of `study_name`, one worker at a time (see `Lock`)."""
    engine = rdb.engine
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        return _postgres_lock(engine, advisory_key(study_name))
    if backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return _file_lock(engine, Path(f"{engine.url.database}.sweep-lock"))
    logger.warning(
        "no cross-process lock for %s storage: the trial budget is exact only within one process",
        backend,
    )
    return in_process_lock(engine)


def _postgres_lock(engine: sqlalchemy.Engine, key: int) -> Lock:
    @contextlib.contextmanager
    def lock() -> Iterator[sqlalchemy.orm.Session]:
        # The lock lives as long as the transaction; commit or rollback (or a dropped
        # connection) releases it.
        with sqlalchemy.orm.Session(engine) as session, session.begin():
            session.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield session

    return lock


def _file_lock(engine: sqlalchemy.Engine, path: Path) -> Lock:
    @contextlib.contextmanager
    def lock() -> Iterator[sqlalchemy.orm.Session]:
        with open(path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                with sqlalchemy.orm.Session(engine) as session, session.begin():
                    yield session
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    return lock


def in_process_lock(engine: sqlalchemy.Engine) -> Lock:
    """Claim transactions for a database without a lock to take: this process only."""
    mutex = threading.Lock()

    @contextlib.contextmanager
    def lock() -> Iterator[sqlalchemy.orm.Session]:
        with mutex, sqlalchemy.orm.Session(engine) as session, session.begin():
            yield session

    return lock


_ALWAYS_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def claim_trial(
    storage: WorkerStorage,
    study_id: int,
    n_trials: int,
    lock: Lock,
    token: str,
    *,
    redo: bool = False,
) -> Claim:
    """Decide, under the lock, whether this worker may start a trial, and create or take it.

    `token`: unique to this claim, the same when it is redone; `redo`: an earlier try of this
    claim failed, and may have committed. `storage` must not retry by itself: if the database
    goes away halfway, the caller redoes the whole claim.
    """
    # Held by one worker at a time: keep it short. COMPLETE and PRUNED trials count by their
    # state alone; only FAILed ones need their end reason, and those are rare.
    with lock() as session:
        if redo:
            mine = _claimed_by(session, study_id, token)
            if mine is not None:
                return Claim(mine)
        active = storage.states(study_id, session)
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
            if _take_waiting(session, trial_id, token):
                return Claim(trial_id, counted=counted, running=running)
        trial_id, number = _create_running(session, study_id, token)
        return Claim(trial_id, created=True, number=number, counted=counted, running=running)


def _claimed_by(session: sqlalchemy.orm.Session, study_id: int, token: str) -> int | None:
    """The RUNNING trial that an earlier try of the claim `token` committed, if any."""
    trials, attrs = TrialRow, TrialSystemAttributeRow
    return session.execute(
        sqlalchemy.select(trials.trial_id)
        .join(attrs, attrs.trial_id == trials.trial_id)
        .where(
            trials.study_id == study_id,
            trials.state == TrialState.RUNNING,
            attrs.key == SystemKey.CLAIM,
            attrs.value_json == json.dumps(token),
        )
    ).scalar()


def _take_waiting(session: sqlalchemy.orm.Session, trial_id: int, token: str) -> bool:
    """Move a queued trial to RUNNING for this claim; False if another worker took it first."""
    trials = TrialRow.__table__
    taken = session.execute(
        sqlalchemy.update(trials)
        .where(trials.c.trial_id == trial_id, trials.c.state == TrialState.WAITING)
        .values(state=TrialState.RUNNING, datetime_start=datetime.now())
    ).rowcount
    if taken != 1:
        return False
    _mark_claimed(session, trial_id, token)
    return True


def _create_running(session: sqlalchemy.orm.Session, study_id: int, token: str) -> tuple[int, int]:
    """A new RUNNING trial for this claim: (trial id, number)."""
    # Optuna numbers a trial by the count of the study's trials before it, under a row lock on
    # the study (other writers, such as `enqueue`, take the same lock): in one statement here.
    StudyRow.find_or_raise_by_id(study_id, session, for_update=True)
    trials = TrialRow.__table__
    count = (
        sqlalchemy.select(sqlalchemy.func.count())
        .select_from(trials)
        .where(trials.c.study_id == study_id)
        .scalar_subquery()
    )
    trial_id, number = session.execute(
        sqlalchemy.insert(trials)
        .values(
            study_id=study_id,
            number=count,
            state=TrialState.RUNNING,
            datetime_start=datetime.now(),
        )
        .returning(trials.c.trial_id, trials.c.number)
    ).one()
    _mark_claimed(session, trial_id, token)
    return trial_id, number


def _mark_claimed(session: sqlalchemy.orm.Session, trial_id: int, token: str) -> None:
    session.add(
        TrialSystemAttributeRow(
            trial_id=trial_id, key=SystemKey.CLAIM, value_json=json.dumps(token)
        )
    )
    # The first heartbeat, in the same transaction: a worker killed before its trial starts
    # leaves a trial that the others find lost (and retry), not one that stays RUNNING.
    session.add(TrialHeartbeatRow(trial_id=trial_id))
    session.flush()
