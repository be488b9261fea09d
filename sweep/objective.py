"""The Optuna objective: Trial -> suggest_params -> run_trial -> report/prune per epoch -> value.

This is the only place where Optuna meets the training code. Every trial records why it ended and
what it cost as user attributes (see `Objective.__call__`), so `sweep status` and reports can say
what happened without re-running anything.

How a trial ends:
- complete      -> COMPLETE with value = best_val_loss (or the accuracy at that epoch); in a
                   multi-objective study (`metric: [val_loss, cost]`) the values are (that
                   metric, cost = training seconds x GPUs, see sweep.status.cost_of)
- stopped       -> PRUNED (the pruner asked after an epoch), `pruned_at_epoch` recorded
- nan-loss      -> FAIL (end_reason "nan-loss"); counts towards --trials: the parameters did it
- an exception  -> FAIL (end_reason "error", `error` = the message); the sweep goes on, except for
                   a SweepError (bad data/model/config), which stops the run: every trial would
                   fail the same way.
- Ctrl-C        -> FAIL (end_reason "interrupted"); KeyboardInterrupt goes on up to the CLI.
- SIGTERM       -> the fine-tune checkpoints the step it is at; TrialPreempted goes on up to the
                   session, which fails the trial (end_reason "preempted") and queues a retry.
- a full disk, a database that stayed away (InfrastructureError) -> the checkpoint stays, the
                   error goes on up to the session, which fails the trial (end_reason
                   "infrastructure", not counted), queues a retry and stops the worker.

The trial loop around the objective (claiming trials, heartbeats, retries) is sweep.session.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from sweep.errors import DiskError, InfrastructureError, SweepError, find_infrastructure_errno
from sweep.heartbeat import ATTR_CHECKPOINT_OF
from sweep.paths import remove_owned, trial_dir
from sweep.space import suggest_params
from sweep.status import cost_of

logger = logging.getLogger(__name__)

CACHE_ENV = "SWEEP_CACHE_DIR"


class TrialPreempted(Exception):
    """The worker was asked to stop (SIGTERM) and the trial saved a checkpoint to resume from."""


class TrialFailed(Exception):
    """A trial failed because of its parameters or a bug inside it; the sweep goes on.

    `sweep run` passes this class as Optuna's `catch=`: the trial is recorded as FAIL and the
    next one starts. Everything else (SweepError, KeyboardInterrupt) stops the run.
    """


def default_cache_dir() -> Path:
    """``$SWEEP_CACHE_DIR``, else ``~/.cache/sweep`` (tokenizers and tokenized datasets)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "sweep"


def worker_id() -> str:
    """`host:pid` of this process, recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def chain_key(trial: Any) -> int:
    """The number of the first trial of `trial`'s retry chain (its own number if it is no retry).

    A retry resumes the checkpoint of the trial it repeats and keeps its best model in the same
    folder: a best epoch reached before the interruption is not lost with the failed original.
    """
    return int(trial.user_attrs.get(ATTR_CHECKPOINT_OF, trial.number))


def model_dir(artifacts_dir: Path, study_name: str, key: int) -> Path:
    """Where the best model of a retry chain `key` (see `chain_key`) is kept."""
    return trial_dir(artifacts_dir, study_name, key)


def checkpoint_dir_of(root: Path, study_name: str, key: int) -> Path:
    """Where the trials of retry chain `key` keep their checkpoint."""
    return trial_dir(root, study_name, key)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _as_infrastructure(error: BaseException) -> InfrastructureError | None:
    """`error` as an InfrastructureError when the machine caused it (a full disk, a database
    that stayed away), else None."""
    if isinstance(error, InfrastructureError):
        return error
    found = find_infrastructure_errno(error)
    if found is None:
        return None
    return DiskError(_first_line(found))


class InterruptGate:
    """Ctrl-C arrives as KeyboardInterrupt only inside the fine-tune; elsewhere it is deferred.

    A KeyboardInterrupt in the middle of Optuna's bookkeeping (creating a trial in `ask`, writing
    its result in `tell`) could leave a trial RUNNING forever. So while a Session runs, SIGINT
    only sets `pending` outside `opened()` blocks; the objective raises KeyboardInterrupt at its
    next safe point (before the fine-tune) and the session stops after the trial being recorded.
    """

    def __init__(self) -> None:
        self.pending = False
        self._open = False
        self._previous: Any = None

    def install(self) -> None:
        """Take over SIGINT (main thread only; elsewhere Python's default stays)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        """Give SIGINT back to whoever had it."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self._open:
            self._open = False  # one interrupt is enough: the cleanup must not be cut short
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """Inside: Ctrl-C raises KeyboardInterrupt (also one that came just before)."""
        if self.pending:
            raise KeyboardInterrupt
        self._open = True
        try:
            yield
        finally:
            self._open = False

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        """Inside an `opened()` block: defer Ctrl-C (storage writes), raise it at the end."""
        was_open, self._open = self._open, False
        try:
            yield
        finally:
            self._open = was_open
        if was_open and self.pending:
            raise KeyboardInterrupt


# Called with (trial number, params) when a trial starts and (trial number, params, epoch metrics)
# after each epoch: the CLI's progress display listens.
OnTrialStart = Callable[[int, Any], None]
OnTrialEpoch = Callable[[int, Any, Any], None]


class Objective:
    """Callable for `study.optimize`: one call is one full fine-tune.

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
        self.checkpoint_root = checkpoint_root
        # Set by SIGTERM (see sweep.session): the running fine-tune checkpoints and returns.
        self.preempt = threading.Event()
        self.on_start = on_start
        self.on_epoch = on_epoch
        self.metric: str = config.metric.name
        # Cost is a second objective: Optuna cannot prune such a study (trial.report and
        # should_prune raise), so the epochs are only recorded (user attr epoch_history).
        self.with_cost: bool = bool(getattr(config.metric, "cost", False))
        self.keep_best: int = config.keep_best
        self.train_seconds = 0.0
        self.trials_run = 0
        self.current_trial: optuna.Trial | None = None
        self._data_spec = config.data_spec()
        self._model_specs = config.model_specs()
        self._worker = worker_id()

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """Run one trial; returns its value, or (metric, cost) in a multi-objective study;
        raises TrialPruned / TrialFailed / the rest."""
        self.current_trial = trial
        self.trials_run += 1
        trial.set_user_attr("worker", self._worker)
        trial.set_user_attr("gpu", os.environ.get("CUDA_VISIBLE_DEVICES"))
        if "attempt" not in trial.user_attrs:
            trial.set_user_attr("attempt", 1)
        params = suggest_params(trial, self.config)
        trial.set_user_attr("seed", params.seed)
        study_name = trial.study.study_name
        # A trial that the heartbeat check re-queued after its worker died carries the user
        # attrs of the original trial, so it finds and resumes the original's checkpoint.
        key = chain_key(trial)
        if ATTR_CHECKPOINT_OF not in trial.user_attrs:
            trial.set_user_attr(ATTR_CHECKPOINT_OF, key)
        root = self.checkpoint_root or self.artifacts_dir / "checkpoints"
        checkpoint_dir = checkpoint_dir_of(root, study_name, key)
        best_dir = model_dir(self.artifacts_dir, study_name, key) if self.keep_best > 0 else None
        epochs_seen: list[Any] = []

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

        if self.on_start is not None:
            self.on_start(trial.number, params)
        from sweep.trial import run_trial  # here: the trial loop itself never needs torch

        started = time.perf_counter()
        try:
            with self.gate.opened():
                result = run_trial(
                    params,
                    self._data_spec,
                    self._model_specs,
                    cache_dir=self.cache_dir,
                    on_epoch=report,
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
        attrs = self._record_result(trial, result)

        if result.end_reason == "complete":
            value = result.best_val_loss if self.metric == "val_loss" else result.best_val_accuracy
            if not math.isfinite(value):
                trial.set_user_attr("end_reason", "nan-loss")
                raise TrialFailed(f"{self.metric} is {value}")
            if self.with_cost:
                # From the recorded attributes, so the value is exactly what `sweep best
                # --budget` and the report compute from them.
                return float(value), cost_of(attrs["train_seconds"], attrs["gpus"])
            return float(value)
        if result.end_reason == "stopped":
            epoch = len(result.epochs)
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        if result.end_reason == "preempted":
            # The checkpoint stays: the retry the session queues resumes from it.
            trial.set_user_attr("retried", True)
            raise TrialPreempted(f"preempted after {len(result.epochs)} epoch(s)")
        if result.end_reason == "interrupted":
            # The trial is recorded as failed and never resumed: its checkpoint is of no use.
            remove_owned(checkpoint_dir)
            raise KeyboardInterrupt
        # nan-loss, or a reason a later version of the training loop adds.
        raise TrialFailed(f"{result.end_reason} after {len(result.epochs)} epoch(s)")

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
            # is the session's (or, if the database stays away, the lost-trial check's).
            with contextlib.suppress(InfrastructureError):
                self._record_epochs(trial, epochs)
            return infrastructure
        if isinstance(error, KeyboardInterrupt):
            self._record_epochs(trial, epochs)
            trial.set_user_attr("end_reason", "interrupted")
        elif isinstance(error, SweepError):
            trial.set_user_attr("end_reason", "error")
            trial.set_user_attr("error", str(error))
        elif isinstance(error, Exception):
            logger.exception("trial %d failed", trial.number)
            self._record_epochs(trial, epochs)
            trial.set_user_attr("end_reason", "error")
            trial.set_user_attr("error", _first_line(error))
            error = TrialFailed(_first_line(error))
        else:
            return error  # SystemExit and the like: not the trial's doing
        remove_owned(checkpoint_dir)
        return error

    def _record_epochs(self, trial: optuna.Trial, epochs: list[Any]) -> None:
        if epochs:
            trial.set_user_attr("epochs_run", len(epochs))
            trial.set_user_attr("epoch_history", [_epoch_dict(e) for e in epochs])

    def _record_result(self, trial: optuna.Trial, result: Any) -> dict[str, Any]:
        """Write the result's user attributes; returns them."""
        best = result.best_epoch
        attrs: dict[str, Any] = {
            "end_reason": result.end_reason,
            "best_epoch": best,
            "epochs_run": len(result.epochs),
            # Wall time inside fine_tune: what the overhead figure subtracts.
            "train_seconds": round(result.train_seconds, 4),
            "samples_per_s": result.samples_per_s,
            "tokens_per_s": result.tokens_per_s,
            "peak_memory_mb": result.peak_memory_mb,
            "device": result.device,
            "gpus": 1 if result.device.startswith("cuda") else 0,
            "n_params": result.n_params,
            "micro_batch": result.micro_batch,
            "micro_batch_halvings": result.micro_batch_halvings,
            "val_loss": result.best_val_loss,
            "val_accuracy": result.best_val_accuracy,
            "epoch_history": [_epoch_dict(e) for e in result.epochs],
        }
        if result.resumed_from_epoch:
            attrs["resumed_from_epoch"] = result.resumed_from_epoch
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


def study_direction(config: Any) -> str:
    """ "minimize" or "maximize", from the study's metric."""
    goal = getattr(config.metric, "goal", None)
    if goal:
        return str(goal)
    return "minimize" if config.metric.name == "val_loss" else "maximize"


def study_directions(config: Any) -> list[str]:
    """The Optuna directions of the study: the metric's, then "minimize" when cost is an
    objective (values[0] is always the metric, values[1] the cost)."""
    cost = ["minimize"] if getattr(config.metric, "cost", False) else []
    return [study_direction(config), *cost]
