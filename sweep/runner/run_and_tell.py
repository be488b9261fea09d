"""One trial from its start to its recorded end: the one runner behind sweeps and `sweep confirm`.

As Optuna's `study/_optimize.py::_run_trial`: the objective runs inside the trial's heartbeat,
and its value or exception becomes a state and a `tell`:

    a value                        -> COMPLETE
    optuna.TrialPruned             -> PRUNED
    TrialFailed (nan-loss, error)  -> FAIL, the run goes on
    TrialPreempted (SIGTERM)       -> FAIL, preempted: the caller decides (a sweep queues a retry)
    an InfrastructureError         -> FAIL as "infrastructure" where it can be written, then raised
    UpdateFinishedTrialError       -> nothing: another worker declared the trial lost meanwhile
    anything else (Ctrl-C, a SweepError, our bug) -> FAIL, then raised
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import DatabaseUnreachable, InfrastructureError, first_line
from sweep.runner.heartbeat import Heartbeat
from sweep.runner.objective import Objective, TrialFailed, TrialPreempted
from sweep.study import EndReason, TrialKey

__all__ = ["Tell", "Told", "record_infrastructure", "run_and_tell", "tell_study"]

logger = logging.getLogger(__name__)

Value = float | Sequence[float] | None
# Stores a trial's end; returns the stored trial, or None when it was finished elsewhere.
Tell = Callable[[optuna.Trial, TrialState, Value], FrozenTrial | None]


@dataclass(frozen=True)
class Told:
    """How a trial ended: the trial as stored (None if another worker finished it first), and
    whether it was preempted (FAIL, checkpointed: to be queued again)."""

    trial: FrozenTrial | None
    preempted: bool = False


def tell_study(study: optuna.Study) -> Tell:
    """The plain tell: `study.tell` with the value of a COMPLETE trial, else with its state."""

    def tell(trial: optuna.Trial, state: TrialState, value: Value) -> FrozenTrial | None:
        if state == TrialState.COMPLETE:
            return study.tell(trial, value)
        return study.tell(trial, state=state)

    return tell


def run_and_tell(
    trial: optuna.Trial,
    objective: Objective,
    heartbeat: Heartbeat,
    *,
    tell: Tell,
    on_infrastructure: Callable[[optuna.Trial, InfrastructureError], object],
) -> Told:
    """Run `objective(trial)` inside `heartbeat` and record how it ended (see the module)."""
    with heartbeat:
        preempted = False
        value: Value = None
        try:
            value = objective(trial)
            state = TrialState.COMPLETE
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except TrialFailed:
            state = TrialState.FAIL
        except TrialPreempted:
            state, preempted = TrialState.FAIL, True
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this trial lost while it ran here (its heartbeats were
            # late) and queued a retry that resumes from the checkpoint: leave it to that.
            logger.warning(
                "trial %d was declared lost while it ran here (late heartbeats); its retry "
                "takes over",
                trial.number,
            )
            return Told(None)
        except InfrastructureError as error:
            # A full disk or a database that stayed away: not the configuration's fault.
            on_infrastructure(trial, error)
            raise
        except BaseException as error:
            # Ctrl-C, a SweepError (bad data: every trial would fail the same way) or our bug:
            # record the trial as failed, then let the error stop the run.
            if isinstance(error, KeyboardInterrupt) and TrialKey.END_REASON not in trial.user_attrs:
                trial.set_user_attr(TrialKey.END_REASON, EndReason.INTERRUPTED)
            tell(trial, TrialState.FAIL, None)
            raise
        return Told(tell(trial, state, value), preempted)


def record_infrastructure(
    study: optuna.Study, trial: optuna.Trial, error: InfrastructureError
) -> FrozenTrial | None:
    """Record `trial` as failed by the infrastructure (not counted, queued again); returns it.

    If the database itself is what failed, nothing can be written: the trial stays RUNNING and
    another worker's lost-trial check queues its retry once its heartbeats stop (None).
    """
    if isinstance(error, DatabaseUnreachable):
        logger.warning(
            "trial %d stays RUNNING in the unreachable database: another worker will find it "
            "lost and resume it from its checkpoint",
            trial.number,
        )
        return None
    try:
        trial.set_user_attr(TrialKey.END_REASON, EndReason.INFRASTRUCTURE)
        trial.set_user_attr(TrialKey.ERROR, first_line(error))
        trial.set_user_attr(TrialKey.RETRIED, True)
        return study.tell(trial, state=TrialState.FAIL)
    except DatabaseUnreachable:
        logger.warning(
            "trial %d could not be recorded (the database is unreachable); another worker will "
            "find it lost and resume it from its checkpoint",
            trial.number,
        )
    return None
