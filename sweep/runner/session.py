"""One worker's trial loop: claim a trial within the budget, run it with a heartbeat, record it.

`sweep run` runs one Session in its own process; `sweep worker` (and each process of `sweep run
--workers N`) runs one too, all on the same study. What each of them guarantees:

- the budget is exact across workers (sweep.storage's claims): no more finished trials than asked;
- a running trial sends heartbeats; a worker that stops sending them is found by the others,
  its trial failed as `worker-lost` and retried from its checkpoint (sweep.runner.heartbeat);
- SIGTERM (a cluster or spot instance taking the machine back): the trial checkpoints the step it
  is at, is failed as `preempted` with a retry queued, and the worker returns at once;
- Ctrl-C: the trial is failed as `interrupted` and the worker returns;
- the database going away: every storage call is retried for up to 10 minutes (sweep.storage's
  ResilientStorage); the claim as a whole is redone, so the budget stays exact.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import DatabaseUnreachable, InfrastructureError, SweepError
from sweep.runner.heartbeat import (
    DEFAULT_INTERVAL_S,
    DEFAULT_MAX_RETRIES,
    Heartbeat,
    grace_period,
    queue_retry,
    reap_lost_trials,
)
from sweep.runner.kept_models import prune_kept_models
from sweep.runner.objective import Objective, worker_id
from sweep.runner.run_and_tell import Told, record_infrastructure, run_and_tell
from sweep.storage import (
    FINISHED,
    Claim,
    ResilientStorage,
    WorkerStorage,
    budget_lock,
    claim_trial,
    drop_sampler_view,
    rdb_below,
    storage_of,
    study_id_of,
    trial_id_of,
)
from sweep.study import SESSION_PREFIX, EndReason, TrialKey, counts_towards_budget

__all__ = ["Session"]

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0  # while the budget is taken by running trials: how often to look again
SAVE_EVERY_S = 10.0  # the session's timing record is written after a trial at most this often


class Session:
    """One process working on a study until it has `n_trials` finished trials (from every
    worker, see `sweep.study.counts_towards_budget`), the timeout passes, or it is told to stop.

    After each trial it keeps only the best models (`keep_best`), calls `on_trial_end` and saves
    the session's timing on the study (user attr ``session:<start>:<host>:<pid>:<id>``), so `sweep
    status` can show the overhead even if the process is killed later.
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Objective,
        *,
        n_trials: int,
        timeout: float | None = None,
        on_trial_end: Callable[[FrozenTrial], None] | None = None,
        heartbeat_interval: float = DEFAULT_INTERVAL_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        give_up_after: float | None = None,
    ) -> None:
        self.objective = objective
        self.n_trials = n_trials
        self.timeout = timeout
        self.on_trial_end = on_trial_end
        self.heartbeat_interval = heartbeat_interval
        self.max_retries = max_retries
        self.interrupted = False
        self.preempted = False
        self.finished_here: list[FrozenTrial] = []
        # Set when the worker stops (SIGTERM) while the database is away: its trial stays
        # RUNNING there, for another worker to find lost and resume from its checkpoint.
        self.abandoned = False
        self.wall_seconds = 0.0
        # Spent waiting while other workers ran the rest of the budget: not the sweep's overhead.
        self.wait_seconds = 0.0
        self._started = 0.0
        self._last_reap = -math.inf
        self._reap_lock = threading.Lock()
        self._last_save = -math.inf
        self.stopping = objective.preempt  # set by SIGTERM: also shortens database retries

        # The storages, from the database up: Optuna's RDB storage (heartbeats and the budget
        # lock talk to it directly), Optuna's cache over it, the worker's own read cache
        # (claims use that one: a claim is retried as a whole), and the retrying wrapper that
        # every call of the study goes through.
        plain = storage_of(study)
        while isinstance(plain, ResilientStorage | WorkerStorage):
            plain = plain.inner
        rdb = rdb_below(plain)
        if rdb is None:
            raise TypeError(f"a Session needs a database storage, got {type(plain).__name__}")
        self._rdb = rdb
        self._rdb.heartbeat_interval = int(max(1, heartbeat_interval))
        self._lock = budget_lock(rdb, study.study_name)
        self._worker_storage = WorkerStorage(plain, rdb)
        self.storage = ResilientStorage(self._worker_storage, stopping=self.stopping)
        if give_up_after is not None:
            self.storage.give_up_after = give_up_after
        self.study = optuna.load_study(
            study_name=study.study_name,
            storage=self.storage,
            sampler=study.sampler,
            pruner=study.pruner,
        )
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        # The random part keeps two sessions of one process within one second apart.
        self.key = f"{SESSION_PREFIX}{started_at}:{worker_id()}:{uuid.uuid4().hex[:8]}"

    def counted(self) -> int:
        """Trials of the study (from every worker) that count towards `n_trials`, as they are
        now (the worker's own view may be a second old)."""
        study_id = study_id_of(self.study)
        self.storage.call(lambda: self._worker_storage.refresh(study_id, unfinished=False))
        trials = self.study.get_trials(deepcopy=False, states=FINISHED)
        return sum(1 for t in trials if counts_towards_budget(t))

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Run trials; returns normally after Ctrl-C and SIGTERM too (`interrupted` /
        `preempted` say which). A SweepError from a trial (bad data or model) propagates.
        """
        self._started = time.perf_counter()
        gate = self.objective.gate
        gate.install()
        previous_term = _install_sigterm(self.stopping)
        try:
            while not (gate.pending or self.stopping.is_set()):
                if self.timeout is not None and self._elapsed() >= self.timeout:
                    break
                claim = self._claim()
                if claim.done:
                    break
                if claim.trial_id is None:
                    # The rest of the budget is being run by others; one of those trials may
                    # still end without counting (lost, preempted), so look again later.
                    waited = time.perf_counter()
                    self.stopping.wait(POLL_INTERVAL_S)
                    self.wait_seconds += time.perf_counter() - waited
                    continue
                self._run_trial(claim.trial_id)
        except KeyboardInterrupt:
            self.interrupted = True
            self._fail_running()
        except DatabaseUnreachable:
            if not self.stopping.is_set():
                raise
            # Told to stop while the database is away: go now. The running trial's checkpoint
            # is on disk; its heartbeats stop, and another worker resumes it from there.
            self.abandoned = True
            trial = self.objective.current_trial
            logger.warning(
                "stopping with the database unreachable: %s stays RUNNING there until another "
                "worker finds it lost and resumes it from its checkpoint",
                f"trial {trial.number}" if trial is not None else "no trial",
            )
        finally:
            gate.uninstall()
            _restore_sigterm(previous_term)
            self.interrupted = self.interrupted or gate.pending
            self.preempted = self.preempted or self.stopping.is_set()
            if not self.abandoned:
                self._save()

    def _elapsed(self) -> float:
        return time.perf_counter() - self._started

    def _reap(self) -> None:
        """Fail the study's trials whose worker is gone and queue their retries (heartbeat.py).

        Called before claims and, while a trial runs, from its heartbeat thread: at most once
        per heartbeat interval either way, so a dead worker is found within the grace period.
        """
        with self._reap_lock:
            if time.monotonic() - self._last_reap < self.heartbeat_interval:
                return
            self._last_reap = time.monotonic()
        reap_lost_trials(
            self._rdb,
            study_id_of(self.study),
            grace=grace_period(self.heartbeat_interval),
            max_retries=self.max_retries,
        )

    def _claim(self) -> Claim:
        self.storage.call(self._reap)
        token = uuid.uuid4().hex
        tries = 0

        def claim_once() -> Claim:
            nonlocal tries
            tries += 1
            return claim_trial(
                self._worker_storage,
                study_id_of(self.study),
                self.n_trials,
                self._lock,
                token,
                redo=tries > 1,
            )

        claim = self.storage.call(claim_once)
        if claim.trial_id is not None:
            self.storage.call(
                lambda: self._worker_storage.own(
                    study_id_of(self.study), claim.trial_id, number=claim.number
                )
            )
        return claim

    def _run_trial(self, trial_id: int) -> None:
        # What Study.ask does before making a Trial: drop the sampler's per-trial view of the
        # study, so that this trial samples from the study as it is now.
        drop_sampler_view(self.study)
        trial = optuna.Trial(self.study, trial_id)
        self.objective.current_trial = trial
        # (The claim wrote the first beat.)
        heartbeat = Heartbeat(
            self._rdb, trial_id, self.heartbeat_interval, beat_now=False, on_beat=self._reap
        )
        told = run_and_tell(
            trial, self.objective, heartbeat, tell=self._tell, on_infrastructure=self._requeue
        )
        if told.trial is None:
            return
        if told.preempted:
            self._queue_again(told, EndReason.PREEMPTED)
        self._after_trial(told.trial)

    def _queue_again(self, told: Told, reason: str) -> None:
        assert told.trial is not None
        self.preempted = self.preempted or reason == EndReason.PREEMPTED
        self.storage.call(
            queue_retry, self._worker_storage, study_id_of(self.study), told.trial, reason
        )
        logger.warning("trial %d %s; queued a retry", told.trial.number, reason)

    def _requeue(self, trial: optuna.Trial, error: InfrastructureError) -> None:
        """A trial the infrastructure stopped: recorded as such (not counted) and queued again."""
        frozen = record_infrastructure(self.study, trial, error)
        if frozen is None:
            return
        try:
            self._queue_again(Told(frozen), EndReason.INFRASTRUCTURE)
        except DatabaseUnreachable:
            logger.warning("could not queue trial %d again: the database is away", frozen.number)

    def _tell(
        self, trial: optuna.Trial, state: TrialState, value: float | Sequence[float] | None
    ) -> FrozenTrial | None:
        """Store the trial's end; returns it, or None if it was already finished elsewhere."""
        try:
            if state == TrialState.COMPLETE:
                return self.study.tell(trial, value)
            return self.study.tell(trial, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            # (Optuna says ValueError when it sees the trial finished before writing.)
            if not storage_of(self.study).get_trial(trial_id_of(trial)).state.is_finished():
                raise
            # Our heartbeats were late by more than the grace period, and another worker
            # declared this trial lost and queued a retry: give the retry our result rather
            # than have it run the trial again.
            if state == TrialState.FAIL:
                return None
            return self._hand_result_to_retry(trial, state, value)

    def _hand_result_to_retry(
        self, trial: optuna.Trial, state: TrialState, value: float | Sequence[float] | None
    ) -> FrozenTrial | None:
        lost = storage_of(self.study).get_trial(trial_id_of(trial))
        # The retry was queued a moment ago: ask the database, not this worker's view.
        study_id = study_id_of(self.study)
        queued = self.storage.call(
            lambda: self._rdb.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        )
        for waiting in queued:
            if waiting.user_attrs.get(TrialKey.RETRY_OF) != lost.number:
                continue
            try:
                if not self.storage.set_trial_state_values(
                    trial_id_of(waiting), TrialState.RUNNING
                ):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            for step, intermediate in lost.intermediate_values.items():
                self.storage.set_trial_intermediate_value(trial_id_of(waiting), step, intermediate)
            for key, attr in lost.user_attrs.items():
                if key not in waiting.user_attrs:
                    self.storage.set_trial_user_attr(trial_id_of(waiting), key, attr)
            self.storage.set_trial_user_attr(
                trial_id_of(waiting), TrialKey.END_REASON, _reason(state, lost)
            )
            retry = optuna.Trial(self.study, trial_id_of(waiting))
            logger.warning(
                "trial %d was declared lost while it ran; its result is stored as trial %d",
                lost.number,
                waiting.number,
            )
            if state == TrialState.COMPLETE:
                return self.study.tell(retry, value)
            return self.study.tell(retry, state=state)
        logger.warning(
            "trial %d was declared lost while it ran; its result is dropped", lost.number
        )
        return None

    def _after_trial(self, trial: FrozenTrial) -> None:
        self.finished_here.append(trial)
        # Finished trials only: the worker's cache answers those with one small query.
        trials = self.study.get_trials(deepcopy=False, states=FINISHED)
        prune_kept_models(
            self.study, self.objective.artifacts_dir, self.objective.keep_best, trials
        )
        if self.on_trial_end is not None:
            self.on_trial_end(trial)
        if time.monotonic() - self._last_save >= SAVE_EVERY_S:
            self._save()

    def _fail_running(self) -> None:
        """The trial that was running when Ctrl-C came must not stay RUNNING."""
        trial = self.objective.current_trial
        if trial is None:
            return
        try:
            frozen = storage_of(self.study).get_trial(trial_id_of(trial))
            if frozen.state == TrialState.RUNNING:
                trial.set_user_attr(TrialKey.END_REASON, EndReason.INTERRUPTED)
                frozen = self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if frozen.state.is_finished() and all(
                t.number != frozen.number for t in self.finished_here
            ):
                self.finished_here.append(frozen)
        except SweepError:
            logger.warning("could not mark trial %d as interrupted", trial.number, exc_info=True)

    # -- bookkeeping -----------------------------------------------------------------------------

    def session_record(self) -> dict[str, Any]:
        """The timing of this session so far (what `_save` stores)."""
        self.wall_seconds = time.perf_counter() - self._started if self._started else 0.0
        return {
            "worker": worker_id(),
            "wall_seconds": round(self.wall_seconds, 4),
            "train_seconds": round(self.objective.train_seconds, 4),
            "wait_seconds": round(self.wait_seconds, 4),
            "trials": self.objective.trials_run,
            "interrupted": self.interrupted,
            "preempted": self.preempted,
        }

    def _save(self) -> None:
        self._last_save = time.monotonic()
        try:
            self.study.set_user_attr(self.key, self.session_record())
        except Exception:
            # Never hide the error that ended the run behind a failed bookkeeping write.
            logger.warning("could not save the session timing on the study", exc_info=True)


def _reason(state: TrialState, lost: FrozenTrial) -> str:
    if state == TrialState.COMPLETE:
        return EndReason.COMPLETE
    if state == TrialState.PRUNED:
        return EndReason.STOPPED
    return str(lost.user_attrs.get(TrialKey.END_REASON) or EndReason.ERROR)


def _install_sigterm(stopping: threading.Event) -> Any:
    """SIGTERM sets `stopping` (the trial checkpoints and the loop ends); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
