"""A storage that rides out database outages: every call is retried with bounded backoff.

A worker may spend an hour in a fine-tune; the database may restart or the network blip in the
meantime. Optuna's RDB storage raises on the first failed statement (and Optuna's own optimize
loop then crashes, leaving trials RUNNING). `ResilientStorage` wraps the storage a study uses and
retries every call that failed because the database could not be reached, waiting 0.5 s, 1 s,
2 s ... up to 10 s between tries, for up to `give_up_after` seconds (10 minutes by default). Then,
or for any other error, it raises: a bug or bad data must not be retried.

Writes are safe to retry: intermediate values and attributes overwrite themselves, and a state
change that did reach the database before the connection dropped is recognised on the retry (the
trial already has the state that was asked for) instead of being reported as an error.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import DatabaseUnreachable

logger = logging.getLogger(__name__)

DEFAULT_GIVE_UP_AFTER_S = 600.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
# Once the worker has been asked to stop (SIGTERM), it waits this long at most for the database:
# the machine is being taken back and the trial is re-run elsewhere anyway.
STOPPING_GIVE_UP_AFTER_S = 15.0


def is_transient(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database could not be reached.

    Optuna wraps SQLAlchemy errors in StorageInternalError and a failed rollback on a dead
    connection raises its own error, so the whole cause/context chain is looked at.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _refused_by_the_server(current):
            return False
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(
            current,
            sqlalchemy.exc.OperationalError
            | sqlalchemy.exc.InterfaceError
            | sqlalchemy.exc.DisconnectionError
            | sqlite3.OperationalError
            | ConnectionError,
        ):
            return True
        if type(current).__module__.startswith("psycopg") and type(current).__name__ in (
            "OperationalError",
            "InterfaceError",
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


# A server that answered and said no: a wrong password or role, a database that does not exist.
# Waiting does not fix those; they are the URL's mistake. SQLSTATE classes 28 and 3D where the
# driver gives one; psycopg gives none for a refused connection, only the server's message.
_REFUSED_STATES = ("28", "3D")
_REFUSED_WORDS = (
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "access denied",
)


def _refused_by_the_server(error: BaseException) -> bool:
    """Whether `error` is the server refusing the login (not an outage)."""
    for candidate in (error, getattr(error, "orig", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str) and state.startswith(_REFUSED_STATES):
            return True
    text = str(getattr(error, "orig", None) or error).lower()
    return "fatal" in text and any(words in text for words in _REFUSED_WORDS)


class DelegatingStorage(BaseStorage):
    """An Optuna storage that hands every call to `inner` through `_forward`; subclasses change
    how (retrying) or answer some calls themselves (the worker storage)."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    def _forward(self, name: str, *args: Any) -> Any:
        return getattr(self.inner, name)(*args)

    def create_new_study(self, directions: Sequence[Any], study_name: str | None = None) -> int:
        return self._forward("create_new_study", directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._forward("delete_study", study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._forward("set_study_user_attr", study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._forward("set_study_system_attr", study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._forward("get_study_id_from_name", study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._forward("get_study_name_from_id", study_id)

    def get_study_directions(self, study_id: int) -> list[Any]:
        return self._forward("get_study_directions", study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._forward("get_study_user_attrs", study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._forward("get_study_system_attrs", study_id)

    def get_all_studies(self) -> list[Any]:
        return self._forward("get_all_studies")

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        # (Workers claim their trials without this: see the claims.) A retry after a commit
        # whose answer was lost leaves an extra trial; the lost-trial check (sweep.runner.heartbeat)
        # fails a RUNNING one that no worker owns as an orphan.
        return self._forward("create_new_trial", study_id, template_trial)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: Any
    ) -> None:
        self._forward("set_trial_param", trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._forward("get_trial_id_from_study_id_trial_number", study_id, trial_number)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._forward("get_trial_number_from_id", trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self._forward("get_trial_param", trial_id, param_name)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._forward("set_trial_intermediate_value", trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._forward("set_trial_user_attr", trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._forward("set_trial_system_attr", trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._forward("get_trial", trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return self._forward("get_all_trials", study_id, deepcopy, states)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        return self._forward("get_n_trials", study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._forward("get_best_trial", study_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._forward("get_trial_params", trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._forward("get_trial_user_attrs", trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._forward("get_trial_system_attrs", trial_id)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self._forward("set_trial_state_values", trial_id, state, values)

    def remove_session(self) -> None:
        self.inner.remove_session()

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self.inner.check_trial_is_updatable(trial_id, trial_state)


class Retrying:
    """Calls retried while the database cannot be reached (see `call`); `stopping`: once set,
    give up after STOPPING_GIVE_UP_AFTER_S instead."""

    def __init__(
        self,
        *,
        give_up_after: float = DEFAULT_GIVE_UP_AFTER_S,
        stopping: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.give_up_after = give_up_after
        self.stopping = stopping or threading.Event()
        self._sleep = sleep
        self._stopping_deadline: float | None = None
        self.outages = 0  # outages ridden out (for tests and the worker's summary)

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`method(*args, **kwargs)`, retried while the database cannot be reached.

        Gives up (DatabaseUnreachable) after `give_up_after` seconds of one outage; once
        `stopping` is set, after STOPPING_GIVE_UP_AFTER_S counted from the first failure seen
        while stopping, for all calls together, so a worker told to stop during an outage is
        gone within that time however many writes it still had to make.
        """
        first_failure: float | None = None
        delay = FIRST_DELAY_S
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as error:
                if not is_transient(error):
                    raise
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    self.outages += 1
                if first_failure == now and self.give_up_after > 0:
                    logger.warning(
                        "database unreachable (%s); retrying for up to %.0f s",
                        _first_line(error),
                        self.give_up_after,
                    )
                deadline = first_failure + self.give_up_after
                if self.stopping.is_set():
                    if self._stopping_deadline is None:
                        self._stopping_deadline = now + STOPPING_GIVE_UP_AFTER_S
                    deadline = min(deadline, self._stopping_deadline)
                if now >= deadline:
                    raise DatabaseUnreachable(
                        f"database unreachable for {now - first_failure:.0f} s, giving up: "
                        f"{_first_line(error)}"
                    ) from error
                self._sleep(min(delay, deadline - now))
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            if first_failure is not None:
                logger.warning(
                    "database reachable again after %.1f s", time.monotonic() - first_failure
                )
            return result


class ResilientStorage(Retrying, DelegatingStorage):
    """Delegates to `inner` (an Optuna storage), retrying calls that failed for want of a
    database (see `Retrying`)."""

    def __init__(
        self,
        inner: BaseStorage,
        *,
        give_up_after: float = DEFAULT_GIVE_UP_AFTER_S,
        stopping: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        Retrying.__init__(self, give_up_after=give_up_after, stopping=stopping, sleep=sleep)
        DelegatingStorage.__init__(self, inner)

    def _forward(self, name: str, *args: Any) -> Any:
        return self.call(getattr(self.inner, name), *args)

    # -- the one write whose retry needs care ----------------------------------------------------

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        attempts = [0]

        def attempt() -> bool:
            attempts[0] += 1
            try:
                return self.inner.set_trial_state_values(trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # A retry after a dropped connection: the first attempt may have been committed.
                if attempts[0] > 1 and state.is_finished():
                    stored = self.inner.get_trial(trial_id)
                    if stored.state == state and (values is None or stored.values == list(values)):
                        return True
                raise

        return self.call(attempt)


def _first_line(error: BaseException) -> str:
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(getattr(root, "orig", None) or root).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(root).__name__}: {line}" if line else type(root).__name__
