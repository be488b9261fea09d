"""The Optuna objective: Trial -> suggest_params -> run_trial -> report/prune per epoch -> value.

This is the only place where Optuna meets the training code. Every trial records why it ended and
what it cost as user attributes (sweep.study.TrialKey), so `sweep status` and reports can say what
happened without re-running anything.

How a trial ends (sweep.study.EndReason):
- complete      -> COMPLETE with value = best_val_loss (or the accuracy at that epoch); in a
                   multi-objective study (`metric: [val_loss, cost]`) the values are (that
                   metric, cost = training seconds x GPUs, see sweep.study.cost_of)
- stopped       -> PRUNED (the pruner asked after an epoch), `pruned_at_epoch` recorded
- nan-loss      -> FAIL (end_reason "nan-loss"); counts towards --trials: the parameters did it
- an exception  -> FAIL (end_reason "error", `error` = the message); the sweep goes on, except for
                   a SweepError (bad data/model/config), which stops the run: every trial would
                   fail the same way.
- Ctrl-C        -> FAIL (end_reason "interrupted"); KeyboardInterrupt goes on up to the CLI.
- SIGTERM       -> the fine-tune checkpoints the step it is at; TrialPreempted goes on up to the
                   runner, which fails the trial (end_reason "preempted") and queues a retry.
- a full disk, a database that stayed away (InfrastructureError) -> the checkpoint stays, the
                   error goes on up to the runner, which fails the trial (end_reason
                   "infrastructure", not counted), queues a retry and stops the worker.

What runs the objective (claiming trials, heartbeats, telling results) is sweep.runner.run_and_tell.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from sweep.errors import DiskError, InfrastructureError, SweepError, find_infrastructure_errno
from sweep.errors import first_line as _first_line
from sweep.runner.gate import InterruptGate
from sweep.search import suggest_params
from sweep.study import (
    EndReason,
    TrialKey,
    chain_key,
    checkpoint_dir_of,
    cost_of,
    model_dir,
    remove_owned,
)

__all__ = [
    "Objective",
    "OnTrialEpoch",
    "OnTrialStart",
    "TrialFailed",
    "TrialPreempted",
    "worker_id",
]

logger = logging.getLogger(__name__)

# Called with (trial number, params) when a trial starts and (trial number, params, epoch metrics)
# after each epoch: the CLI's progress display listens.
OnTrialStart = Callable[[int, Any], None]
OnTrialEpoch = Callable[[int, Any, Any], None]


class TrialPreempted(Exception):
    """The worker was asked to stop (SIGTERM) and the trial saved a checkpoint to resume from."""


class TrialFailed(Exception):
    """A trial failed because of its parameters or a bug inside it; the sweep goes on.

    The runner records the trial as FAIL and the next one starts. Everything else (SweepError,
    KeyboardInterrupt) stops the run.
    """


def worker_id() -> str:
    """`host:pid` of this process, recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _as_infrastructure(error: BaseException) -> InfrastructureError | None:
    """`error` as an InfrastructureError when the machine caused it (a full disk, a database
    that stayed away), else None."""
    if isinstance(error, InfrastructureError):
        return error
    found = find_infrastructure_errno(error)
    if found is None:
        return None
    return DiskError(_first_line(found))


class Objective:
    """Callable on an Optuna trial: one call is one full fine-tune.

    Also keeps the time this process spent inside fine-tunes (`train_seconds`) and the trials it
    ran, for the overhead figure of `sweep status`: loading the cached data, suggesting, pruning
    and storage writes are overhead; the fine-tune (model build, epochs, checkpoints) is not.
    """

    def __init__(
        self,
        config: Any,
        *,
        cache_dir: Path,
        artifacts_dir: Path,
        device: str | None = None,
        checkpoint_root: Path | None = None,
        on_start: OnTrialStart | None = None,
        on_epoch: OnTrialEpoch | None = None,
        gate: InterruptGate | None = None,
    ) -> None:
        self.config = config
        self.gate = gate or InterruptGate()
        self.cache_dir = cache_dir
        self.artifacts_dir = artifacts_dir
        self.device = device
        # Where trials keep their checkpoints: on a cluster, a path every worker can reach,
        # so that a retry on another machine resumes where the lost trial stopped.
        self.checkpoint_root = checkpoint_root or artifacts_dir / "checkpoints"
        # Set by SIGTERM (see sweep.runner.session): the running fine-tune checkpoints, returns.
        self.preempt = threading.Event()
        self.on_start = on_start
        self.on_epoch = on_epoch
        self.metric: str = config.metric.name
        # Cost is a second objective: Optuna cannot prune such a study (trial.report and
        # should_prune raise), so the epochs are only recorded (user attr epoch_history).
        self.with_cost: bool = bool(config.metric.cost)
        self.keep_best: int = config.keep_best
        self.train_seconds = 0.0
        self.trials_run = 0
        self.current_trial: optuna.Trial | None = None
        self._worker = worker_id()

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """Run one trial; returns its value, or (metric, cost) in a multi-objective study;
        raises TrialPruned / TrialFailed / TrialPreempted / the rest."""
        self.current_trial = trial
        self.trials_run += 1
        params = self._start(trial)
        # A retry carries the chain of the trial it repeats: it resumes that trial's checkpoint
        # and keeps its best model in the same folder.
        key = chain_key(trial)
        study_name = trial.study.study_name
        checkpoint_dir = checkpoint_dir_of(self.checkpoint_root, study_name, key)
        best_dir = model_dir(self.artifacts_dir, study_name, key) if self.keep_best > 0 else None
        epochs_seen: list[Any] = []
        from sweep.training import run_trial  # here: the trial loop itself never needs torch

        started = time.perf_counter()
        try:
            with self.gate.opened():
                result = run_trial(
                    params,
                    self.config.data,
                    self.config.models,
                    cache_dir=self.cache_dir,
                    on_epoch=self._reporter(trial, params, epochs_seen),
                    checkpoint_dir=checkpoint_dir,
                    best_model_dir=best_dir,
                    device=self.device,
                    select_by=self.metric,
                    should_stop=self.preempt.is_set,
                )
        except BaseException as error:
            self.train_seconds += time.perf_counter() - started
            outcome = self._failed(trial, error, epochs_seen, checkpoint_dir)
            if outcome is error:
                raise
            raise outcome from error
        self.train_seconds += result.train_seconds
        return self._outcome(trial, result, self._record_result(trial, result), checkpoint_dir)

    def _start(self, trial: optuna.Trial) -> Any:
        """Say who runs the trial, ask for its parameters, and tell the display it starts."""
        trial.set_user_attr(TrialKey.WORKER, self._worker)
        trial.set_user_attr(TrialKey.GPU, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if TrialKey.ATTEMPT not in trial.user_attrs:
            trial.set_user_attr(TrialKey.ATTEMPT, 1)
        params = suggest_params(trial, self.config)
        trial.set_user_attr(TrialKey.SEED, params.seed)
        if TrialKey.CHECKPOINT_OF not in trial.user_attrs:
            trial.set_user_attr(TrialKey.CHECKPOINT_OF, trial.number)
        if self.on_start is not None:
            self.on_start(trial.number, params)
        return params

    def _reporter(
        self, trial: optuna.Trial, params: Any, epochs_seen: list[Any]
    ) -> Callable[[Any], bool]:
        """The fine-tune's per-epoch callback: report to the pruner and the display; prune?"""

        def report(metrics: Any) -> bool:
            epochs_seen.append(metrics)
            value = metrics.val_loss if self.metric == "val_loss" else metrics.val_accuracy
            with self.gate.closed():
                if math.isfinite(value) and not self.with_cost:
                    trial.report(value, metrics.epoch)
                if self.on_epoch is not None:
                    self.on_epoch(trial.number, params, metrics)
                if self.with_cost:
                    return False
                # After the last epoch there is no compute left to save: the trial completes
                # (pruning it would only throw its result away).
                return metrics.epoch < params.epochs and trial.should_prune()

        return report

    def _outcome(
        self, trial: optuna.Trial, result: Any, attrs: dict[str, Any], checkpoint_dir: Path
    ) -> float | tuple[float, float]:
        """The trial's value for a complete fine-tune, else the exception that says how it ended."""
        reason = result.end_reason
        if reason == EndReason.COMPLETE:
            value = result.best_val_loss if self.metric == "val_loss" else result.best_val_accuracy
            if not math.isfinite(value):
                trial.set_user_attr(TrialKey.END_REASON, EndReason.NAN_LOSS)
                raise TrialFailed(f"{self.metric} is {value}")
            if self.with_cost:
                # From the recorded attributes, so the value is exactly what `sweep best
                # --budget` and the report compute from them.
                return float(value), cost_of(attrs[TrialKey.TRAIN_SECONDS], attrs[TrialKey.GPUS])
            return float(value)
        if reason == EndReason.STOPPED:
            epoch = len(result.epochs)
            trial.set_user_attr(TrialKey.PRUNED_AT_EPOCH, epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        if reason == EndReason.PREEMPTED:
            # The checkpoint stays: the retry the runner queues resumes from it.
            trial.set_user_attr(TrialKey.RETRIED, True)
            raise TrialPreempted(f"preempted after {len(result.epochs)} epoch(s)")
        if reason == EndReason.INTERRUPTED:
            # The trial is recorded as failed and never resumed: its checkpoint is of no use.
            remove_owned(checkpoint_dir)
            raise KeyboardInterrupt
        # nan-loss, or a reason a later version of the training loop adds.
        raise TrialFailed(f"{reason} after {len(result.epochs)} epoch(s)")

    def _failed(
        self, trial: optuna.Trial, error: BaseException, epochs: list[Any], checkpoint_dir: Path
    ) -> BaseException:
        """Record why the fine-tune raised `error`; returns what to raise in its place.

        The checkpoint goes with a trial that will never be resumed (Ctrl-C, an error in it)
        and stays where a retry will resume from it (the machine failed, not the trial).
        """
        if isinstance(error, optuna.exceptions.UpdateFinishedTrialError):
            return error  # declared lost by another worker while it ran here: its retry goes on
        infrastructure = _as_infrastructure(error)
        if infrastructure is not None:
            # The database may be what failed: what can be recorded now is recorded, the rest
            # is the runner's (or, if the database stays away, the lost-trial check's).
            with contextlib.suppress(InfrastructureError):
                self._record_epochs(trial, epochs)
            return infrastructure
        if isinstance(error, KeyboardInterrupt):
            self._record_epochs(trial, epochs)
            trial.set_user_attr(TrialKey.END_REASON, EndReason.INTERRUPTED)
        elif isinstance(error, SweepError):
            trial.set_user_attr(TrialKey.END_REASON, EndReason.ERROR)
            trial.set_user_attr(TrialKey.ERROR, str(error))
        elif isinstance(error, Exception):
            logger.exception("trial %d failed", trial.number)
            self._record_epochs(trial, epochs)
            trial.set_user_attr(TrialKey.END_REASON, EndReason.ERROR)
            trial.set_user_attr(TrialKey.ERROR, _first_line(error))
            error = TrialFailed(_first_line(error))
        else:
            return error  # SystemExit and the like: not the trial's doing
        remove_owned(checkpoint_dir)
        return error

    def _record_epochs(self, trial: optuna.Trial, epochs: list[Any]) -> None:
        if epochs:
            trial.set_user_attr(TrialKey.EPOCHS_RUN, len(epochs))
            trial.set_user_attr(TrialKey.EPOCH_HISTORY, [_epoch_dict(e) for e in epochs])

    def _record_result(self, trial: optuna.Trial, result: Any) -> dict[str, Any]:
        """Write the result's user attributes; returns them."""
        attrs: dict[str, Any] = {
            TrialKey.END_REASON: result.end_reason,
            TrialKey.BEST_EPOCH: result.best_epoch,
            TrialKey.EPOCHS_RUN: len(result.epochs),
            # Wall time inside fine_tune: what the overhead figure subtracts.
            TrialKey.TRAIN_SECONDS: round(result.train_seconds, 4),
            TrialKey.SAMPLES_PER_S: result.samples_per_s,
            TrialKey.TOKENS_PER_S: result.tokens_per_s,
            TrialKey.PEAK_MEMORY_MB: result.peak_memory_mb,
            TrialKey.DEVICE: result.device,
            TrialKey.GPUS: 1 if result.device.startswith("cuda") else 0,
            TrialKey.N_PARAMS: result.n_params,
            TrialKey.MICRO_BATCH: result.micro_batch,
            TrialKey.MICRO_BATCH_HALVINGS: result.micro_batch_halvings,
            TrialKey.VAL_LOSS: result.best_val_loss,
            TrialKey.VAL_ACCURACY: result.best_val_accuracy,
            TrialKey.EPOCH_HISTORY: [_epoch_dict(e) for e in result.epochs],
        }
        if result.resumed_from_epoch:
            attrs[TrialKey.RESUMED_FROM_EPOCH] = result.resumed_from_epoch
        # One storage write each (Optuna has no batch call): keep this list short.
        for key, value in attrs.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None  # JSON has no NaN; None reads as "not measured"
            trial.set_user_attr(key, value)
        return attrs


def _epoch_dict(metrics: Any) -> dict[str, Any]:
    data = asdict(metrics)
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()
    }
