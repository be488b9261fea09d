"""Heartbeats of running trials, and what happens to a trial whose worker stops sending them.

Every running trial gets a heartbeat row that its worker refreshes every `interval` seconds from a
background thread. Unlike Optuna's heartbeat thread, ours never dies: a database error is logged
and the next beat tries again, so a database restart does not get live trials declared lost.

Every worker, before claiming a trial, while it waits for one, and from the heartbeat thread of
the trial it runs (once per interval), looks for trials that are RUNNING but silent for longer
than the grace period (their worker was killed, its machine lost):
it marks them FAIL with the end reason `worker-lost` and queues a retry with the same parameters,
which resumes from the lost trial's last checkpoint. A trial is retried at most `max_retries`
times for a lost worker (something in it may be what kills workers); preemption (SIGTERM, see
sweep.runner.session) queues a retry too, without limit, as it says nothing about the trial.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.storage import stale_trial_ids, trial_id_of
from sweep.study import EndReason, TrialKey

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 20
GRACE_HEARTBEATS = 3  # a trial is lost after this many missed heartbeats
DEFAULT_MAX_RETRIES = 3


def grace_period(interval: float) -> float:
    """Seconds of silence after which a running trial's worker counts as lost."""
    return GRACE_HEARTBEATS * interval


class Heartbeat:
    """Context manager: refresh `trial_id`'s heartbeat every `interval` s while inside.

    `on_beat`, if given, runs in the heartbeat thread after each beat (the session looks for
    lost trials there, so a dead worker is found within the grace period even while every
    other worker is busy with a long trial); an exception in it is logged, never raised.
    """

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        trial_id: int,
        interval: float,
        *,
        beat_now: bool = True,
        on_beat: Callable[[], object] | None = None,
    ) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = interval
        self.beat_now = beat_now  # False: the first beat is already written
        self.on_beat = on_beat
        self.failures = 0  # beats that could not be written (the database was away)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        if self.beat_now:  # a trial without a heartbeat row could never be found lost
            self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._beat() and self.on_beat is not None and not self._stop.is_set():
                try:
                    self.on_beat()
                except Exception as error:  # the next beat goes on regardless
                    logger.warning("looking for lost trials failed (%s)", type(error).__name__)

    def _beat(self) -> bool:
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as error:  # never let the thread die: the next beat tries again
            self.failures += 1
            if self.failures == 1 or self.failures % 10 == 0:
                logger.warning(
                    "heartbeat of trial id %d not recorded (%s); trying again in %.0f s",
                    self.trial_id,
                    type(error).__name__,
                    self.interval,
                )
            return False
        return True


def queue_retry(
    storage: optuna.storages.BaseStorage, study_id: int, lost: FrozenTrial, reason: str
) -> None:
    """Queue a WAITING trial with `lost`'s parameters that resumes from its checkpoint."""
    attempt = int(lost.user_attrs.get(TrialKey.ATTEMPT, 1))
    user_attrs: dict[str, Any] = {
        TrialKey.RETRY_OF: lost.number,
        TrialKey.ATTEMPT: attempt + 1 if reason == EndReason.WORKER_LOST else attempt,
        TrialKey.CHECKPOINT_OF: lost.user_attrs.get(TrialKey.CHECKPOINT_OF, lost.number),
        TrialKey.RETRY_REASON: reason,
    }
    template = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=lost.params,
        distributions=lost.distributions,
        user_attrs=user_attrs,
    )
    storage.create_new_trial(study_id, template_trial=template)


def reap_lost_trials(
    rdb: optuna.storages.RDBStorage,
    study_id: int,
    *,
    grace: float,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> list[int]:
    """Fail the study's trials whose worker is gone, queue their retries; return their numbers.

    Lost: RUNNING with no heartbeat for `grace` seconds, or RUNNING without a worker for
    2 x `grace` (an orphan: a trial row created by a retried write whose first try did commit).
    Several workers may look at once: only the one whose FAIL lands queues the retry. Reads and
    writes the RDB storage itself (never a worker's cached view), so it may run in any thread.
    """
    stale = set(stale_trial_ids(rdb, study_id, grace))
    now = datetime.now()
    lost_numbers = []
    for trial in rdb.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _lost_reason(trial, trial_id_of(trial) in stale, now, grace)
        if reason is None:
            continue
        attempt = int(trial.user_attrs.get(TrialKey.ATTEMPT, 1))
        retry = reason == EndReason.WORKER_LOST and attempt <= max_retries
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            rdb.set_trial_user_attr(trial_id_of(trial), TrialKey.END_REASON, reason)
            rdb.set_trial_user_attr(trial_id_of(trial), TrialKey.RETRIED, retry)
            if not rdb.set_trial_state_values(trial_id_of(trial), state=TrialState.FAIL):
                continue
            lost_numbers.append(trial.number)
            logger.warning(
                "trial %d: worker %s lost (no heartbeat for %.0f s)%s",
                trial.number,
                trial.user_attrs.get(TrialKey.WORKER, "unknown"),
                grace,
                "; queued a retry" if retry else "",
            )
            if retry:
                queue_retry(rdb, study_id, trial, reason)
    return lost_numbers


def _lost_reason(trial: FrozenTrial, stale: bool, now: datetime, grace: float) -> str | None:
    """worker-lost (silent heartbeat), orphan (never run by a worker), or None (alive)."""
    if stale:
        return EndReason.WORKER_LOST
    started = trial.datetime_start
    unclaimed = TrialKey.WORKER not in trial.user_attrs and started is not None
    if unclaimed and now - started > timedelta(seconds=2 * grace):
        return EndReason.ORPHAN
    return None
