"""The reads a worker makes many times per trial, answered from what it already knows.

With Optuna's storage every pruning check reads the study's unfinished trials (six queries, the
intermediate values of every running trial included) and the checking trial itself (six more);
with 16 workers that is most of each worker's CPU. Two facts make nearly all of it unnecessary:

- A finished trial never changes. Finished trials are kept here, and a refresh asks the
  database for the ids and states of the study's trials (one small query) and fetches only the
  finished ones not seen yet. Pruners and samplers may use a view up to READ_MAX_AGE_S old
  (trials of other workers that finished or started in the last second change no decision that
  matters); the budget claim and the lost-trial check always read the database. A read that
  includes unfinished trials (the sampler's view of the study, successive halving's rungs) reads
  them whole, in the same query as the newly finished ones; pruners that ask for finished
  trials only (median, Hyperband's brackets) do without them.
- The trial a worker runs is written by that worker alone. Its copy here is updated by every
  write this worker makes through this storage, so reading it needs no query. (If another worker
  declares it lost, the database refuses this worker's next write: see sweep.runner.session.)

Everything else goes to the storage underneath. This depends on Optuna's table layout
(`trials.trial_id/study_id/state/number`), unchanged since Optuna 1.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweep.storage._optuna_compat import (
    IntermediateValueRow,
    TrialRow,
    cache_running_trial,
    read_trials,
    trial_id_of,
)
from sweep.storage._retry import DelegatingStorage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
READ_MAX_AGE_S = 1.0


class WorkerStorage(DelegatingStorage):
    """Delegates to `inner` (Optuna's cached RDB storage over `rdb`) except for reads of the
    study's trials (a view refreshed at most every READ_MAX_AGE_S, see `refresh`) and of the
    trials this worker owns (see `own`)."""

    def __init__(self, inner: BaseStorage, rdb: optuna.storages.RDBStorage) -> None:
        super().__init__(inner)
        self.rdb = rdb
        self._lock = threading.Lock()
        self._finished: dict[int, dict[int, FrozenTrial]] = {}  # study id -> trial id -> trial
        self._owned: dict[int, FrozenTrial] = {}  # trial id -> this worker's running trial
        # study id -> time.monotonic() of the last refresh (of all trials: `_refreshed_all`)
        self._refreshed: dict[int, float] = {}
        self._refreshed_all: dict[int, float] = {}
        self._owner_study: dict[int, int] = {}  # owned trial id -> its study id
        self._finished_by_id: dict[int, FrozenTrial] = {}  # the finished trials of every study
        self._unfinished: dict[int, list[FrozenTrial]] = {}  # study id -> as last refreshed

    # -- what a worker runs ----------------------------------------------------------------------

    def own(self, study_id: int, trial_id: int, *, number: int | None = None) -> None:
        """This worker runs `trial_id` from now on: keep its copy here, written through.

        `number`: given for a trial this worker just created empty, which needs no read (a
        queued trial is read whole: it comes with parameters and attributes).
        """
        if number is not None:
            trial = FrozenTrial(
                number=number,
                state=TrialState.RUNNING,
                value=None,
                values=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=trial_id,
            )
        else:
            trial = self.rdb.get_trial(trial_id)
        with self._lock:
            self._owned[trial_id] = trial
            self._owner_study[trial_id] = study_id
        cache_running_trial(self.inner, study_id, trial)

    def states(
        self, study_id: int, session: sqlalchemy.orm.Session | None = None
    ) -> list[tuple[int, int, TrialState]]:
        """(trial id, number, state) of every trial of the study: one small query, one snapshot
        (two queries could see a trial finish in between and miss it in both).

        `session`: read within that session's transaction (else in a short one of its own).
        """
        query = sqlalchemy.select(TrialRow.trial_id, TrialRow.number, TrialRow.state).where(
            TrialRow.study_id == study_id
        )
        if session is not None:
            return [(row[0], row[1], row[2]) for row in session.execute(query)]
        with self.rdb.engine.connect() as connection:
            return [(row[0], row[1], row[2]) for row in connection.execute(query)]

    def finished_trials(self, study_id: int, max_age: float = 0.0) -> list[FrozenTrial]:
        """The study's finished trials; refreshed first if the last refresh is more than
        `max_age` seconds old."""
        self._refresh_if_older(study_id, max_age, unfinished=False)
        with self._lock:
            return sorted(self._finished[study_id].values(), key=lambda t: t.number)

    def _refresh_if_older(self, study_id: int, max_age: float, *, unfinished: bool) -> None:
        refreshed = self._refreshed_all if unfinished else self._refreshed
        with self._lock:
            fresh = time.monotonic() - refreshed.get(study_id, -math.inf) < max_age
        if not fresh:
            self.refresh(study_id, unfinished=unfinished)

    def refresh(self, study_id: int, *, unfinished: bool = True) -> None:
        """Read, in one query, the trials that finished since the last refresh and, with
        `unfinished`, the unfinished ones (whole: a sampler's constant liar needs their
        parameters, successive halving their rungs)."""
        started = time.monotonic()
        snapshot = self.states(study_id)
        running = self._read(
            study_id,
            {tid for tid, _, state in snapshot if state.is_finished()},
            {tid for tid, _, state in snapshot if not state.is_finished()} if unfinished else set(),
            newest=max((tid for tid, _, _ in snapshot), default=0),
        )
        with self._lock:
            self._refreshed[study_id] = started
            if unfinished:
                self._unfinished[study_id] = running
                self._refreshed_all[study_id] = started

    def fetch_finished(
        self, study_id: int, ids: set[int], *, newest: int | None = None
    ) -> list[FrozenTrial]:
        """The finished trials `ids` of the study, read from the database only if not known.

        `newest`: the study's largest trial id when `ids` were listed (see `_read`).
        """
        self._read(study_id, ids, set(), newest=newest or 0)
        with self._lock:
            known = self._finished[study_id]
            return [known[i] for i in ids if i in known]

    def _read(
        self, study_id: int, finished: set[int], unfinished: set[int], *, newest: int
    ) -> list[FrozenTrial]:
        """Read the `finished` trials not known yet and the `unfinished` ones in one query;
        keep the finished ones, return those still unfinished."""
        with self._lock:
            known = self._finished.setdefault(study_id, {})
            wanted = (finished - known.keys()) | unfinished
        if not wanted:
            return []
        # Optuna's reader takes "these ids, and every id above a bound". With the bound at the
        # newest trial there was, that tail is empty, or holds the few trials created since;
        # with the bound at max(wanted) it would drag in every running trial with its
        # intermediate values, and the more workers, the more of those.
        fetched = read_trials(self.rdb, study_id, wanted, max(max(wanted), newest))
        still_running = []
        with self._lock:
            for trial in fetched:
                if trial.state.is_finished():
                    known[trial_id_of(trial)] = trial
                    self._finished_by_id[trial_id_of(trial)] = trial
                elif trial_id_of(trial) in unfinished or trial_id_of(trial) > newest:
                    still_running.append(trial)
        return still_running

    # -- reads -----------------------------------------------------------------------------------

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        # Pruners read the finished trials, samplers every trial (directly, or through
        # Optuna's per-trial cache), successive halving the running trials' rungs: all of
        # them may have a view up to READ_MAX_AGE_S old. (Code that needs the database as it is
        # now, such as the lost-trial check, reads the RDB storage itself.)
        unfinished = states is None or not all(s.is_finished() for s in TrialState if s in states)
        self._refresh_if_older(study_id, READ_MAX_AGE_S, unfinished=unfinished)
        trials = self._known(study_id, unfinished=unfinished)
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def _known(self, study_id: int, *, unfinished: bool) -> list[FrozenTrial]:
        """The study's trials as last read, but this worker's own trials as they are now."""
        with self._lock:
            trials: dict[int, FrozenTrial] = {}
            if unfinished:
                trials = {trial_id_of(t): t for t in self._unfinished.get(study_id, [])}
            trials.update(self._finished[study_id])
            if unfinished:
                trials.update(
                    (tid, t) for tid, t in self._owned.items() if self._owner_study[tid] == study_id
                )
        return sorted(trials.values(), key=lambda t: t.number)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            known = self._owned.get(trial_id) or self._finished_by_id.get(trial_id)
        return known if known is not None else self._forward("get_trial", trial_id)

    # -- writes: to the database, then to the owned copy -----------------------------------------

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._forward("set_trial_param", trial_id, param_name, param_value_internal, distribution)
        self._update(
            trial_id,
            params={param_name: distribution.to_external_repr(param_value_internal)},
            distributions={param_name: distribution},
        )

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._lock:
            owned = self._owned.get(trial_id)
            first = owned is not None and step not in owned.intermediate_values
        if first:
            self._insert_intermediate_value(trial_id, step, intermediate_value)
        else:
            self._forward("set_trial_intermediate_value", trial_id, step, intermediate_value)
        self._update(trial_id, intermediate_values={step: intermediate_value})

    def _insert_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        """A step's first value of a trial this worker runs, in one statement (Optuna's write
        takes four round trips): inserted only while the trial is RUNNING, and only once, so
        a retry after a lost answer does not write it twice."""
        trials, values = TrialRow, IntermediateValueRow
        stored, kind = values.intermediate_value_to_stored_repr(value)
        row = sqlalchemy.select(
            sqlalchemy.literal(trial_id),
            sqlalchemy.literal(step),
            sqlalchemy.literal(stored, values.intermediate_value.type),
            sqlalchemy.literal(kind, values.intermediate_value_type.type),
        ).where(
            sqlalchemy.exists().where(
                trials.trial_id == trial_id, trials.state == TrialState.RUNNING
            ),
            ~sqlalchemy.exists().where(values.trial_id == trial_id, values.step == step),
        )
        # (RETURNING: with it, PostgreSQL's and SQLite's drivers say how many rows went in;
        # rowcount is -1 for an INSERT ... SELECT.)
        insert = (
            sqlalchemy.insert(values)
            .from_select(["trial_id", "step", "intermediate_value", "intermediate_value_type"], row)
            .returning(values.trial_intermediate_value_id)
        )
        state = sqlalchemy.select(trials.state).where(trials.trial_id == trial_id)
        with self.rdb.engine.begin() as connection:
            inserted = len(connection.execute(insert).all())
            if inserted != 1 and connection.execute(state).scalar() != TrialState.RUNNING:
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"Trial#{trial_id} has already finished and can not be updated."
                )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._forward("set_trial_user_attr", trial_id, key, value)
        self._update(trial_id, user_attrs={key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._forward("set_trial_system_attr", trial_id, key, value)
        self._update(trial_id, system_attrs={key: value})

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            done = self._forward("set_trial_state_values", trial_id, state, values)
        except BaseException:
            if state.is_finished():  # refused (it already was) or failed: ask the database
                with self._lock:
                    self._owned.pop(trial_id, None)
            raise
        with self._lock:
            trial = self._owned.get(trial_id)
            if trial is not None and done:
                trial.state = state
                if values is not None:
                    trial._values = list(values)
                if state.is_finished():
                    # Our own result joins the finished trials without another read.
                    trial.datetime_complete = datetime.now()
                    del self._owned[trial_id]
                    study_id = self._owner_study.pop(trial_id)
                    self._finished.setdefault(study_id, {})[trial_id] = trial
                    self._finished_by_id[trial_id] = trial
        return done

    def _update(self, trial_id: int, **changes: dict[Any, Any]) -> None:
        """Apply a write that reached the database to the owned copy (copy-on-write dicts, as
        callers may hold the previous ones)."""
        with self._lock:
            trial = self._owned.get(trial_id)
            if trial is None:
                return
            for field, update in changes.items():
                setattr(trial, field, {**getattr(trial, field), **update})
