"""The fine-tune loop: plain torch, small named helpers above one loop to read top to bottom.

`fine_tune` trains one model for one set of hyperparameters and reports after every epoch through a
callback; it knows nothing of Optuna. What makes it fast (the README's performance section):
  - batches are grouped by length and padded to a multiple of 32 (8 on CPU; `_batching`), so
    compute goes to real tokens and the set of tensor shapes stays small;
  - on CUDA: bf16 autocast, TF32 matmuls, fused AdamW, and no host synchronisation inside a step
    (the loss is summed on the device and looked at every NAN_CHECK_EVERY steps);
  - on CPU: as many threads as this process has cores, fused AdamW.
What makes it dependable: a seed fixes everything (init, dropout, batch order); a checkpoint after
each epoch, and one mid-epoch when the caller asks to stop (preemption), lets a trial resume to the
same result; a CUDA out-of-memory halves the micro-batch and retries, keeping the effective batch
through gradient accumulation.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sweep.config import ModelConfig
from sweep.errors import ConfigError, DataError
from sweep.study import EndReason
from sweep.training._checkpoint import (
    load_checkpoint,
    read_latest,
    remove_checkpoint,
    save_best_model,
    set_rng_state,
)
from sweep.training._device import describe_device, peak_memory_mb, prepare_device, resolve_device
from sweep.training._trainer import Attempt, Trainer, fingerprint, make_trainer
from sweep.training.models import count_parameters
from sweep.training.types import EpochMetrics, FineTuneResult, OnEpoch, TrialParams

if TYPE_CHECKING:
    from sweep.data import TokenizedData

__all__ = ["fine_tune"]

log = logging.getLogger(__name__)

# A run that ended this way keeps its checkpoint: a retry resumes from it.
_RESUMABLE = (EndReason.INTERRUPTED, EndReason.PREEMPTED)


@dataclass(frozen=True)
class _Options:
    """What the caller asked of the fine-tune, the same for every attempt."""

    on_epoch: OnEpoch | None
    checkpoint_dir: Path | None
    best_model_dir: Path | None
    keep_checkpoints: bool
    select_by: str
    should_stop: Callable[[], bool] | None


def fine_tune(
    params: TrialParams,
    data: TokenizedData,
    model_spec: ModelConfig,
    *,
    on_epoch: OnEpoch | None = None,
    checkpoint_dir: Path | None = None,
    device: str | None = None,
    max_micro_batch: int | None = None,
    best_model_dir: Path | None = None,
    keep_checkpoints: bool = False,
    select_by: str = "val_loss",
    should_stop: Callable[[], bool] | None = None,
) -> FineTuneResult:
    """Fine-tune a fresh `model_spec` model on `data` with `params`; return its best epoch, costs.

    After every epoch the validation loss and accuracy go to `on_epoch`; if it returns True the
    run stops (end_reason "stopped"). With `checkpoint_dir`, a checkpoint is saved after every
    epoch, and a run that finds one there resumes after its epoch, with the same result as an
    uninterrupted run; epochs restored from it are passed to `on_epoch` before training goes on
    (so a retried trial's history is complete). The checkpoint is removed at the end unless
    `keep_checkpoints` or the run was interrupted (Ctrl-C: end_reason "interrupted"; the caller
    decides whether to stop). `best_model_dir` receives the best epoch's model (save_pretrained),
    tokenizer and labels.json. The best epoch is the one with the lowest validation loss, or the
    highest accuracy with `select_by="val_accuracy"`. A CUDA out-of-memory halves the micro-batch
    (which starts at min(batch_size, max_micro_batch)) and retries from the last checkpoint or from
    scratch; at micro-batch 1 it is re-raised.

    `should_stop` is asked after every optimizer step; once it says True (the machine is being
    taken back), the run saves a checkpoint of that step and returns with end_reason
    "preempted", and a later run with the same `checkpoint_dir` goes on from that very step.
    """
    started = time.perf_counter()
    if select_by not in ("val_loss", "val_accuracy"):
        raise ValueError(f"select_by must be 'val_loss' or 'val_accuracy', got {select_by!r}")
    _check_inputs(params, data)
    dev = resolve_device(device)
    prepare_device(dev)
    options = _Options(
        on_epoch=on_epoch,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
        best_model_dir=Path(best_model_dir) if best_model_dir is not None else None,
        keep_checkpoints=keep_checkpoints,
        select_by=select_by,
        should_stop=should_stop,
    )
    attempt = _first_attempt(params, data, model_spec, options, max_micro_batch)
    while True:
        try:
            result = _run(params, data, model_spec, dev, attempt, options)
            return dataclasses.replace(result, train_seconds=time.perf_counter() - started)
        except torch.cuda.OutOfMemoryError:
            if attempt.micro_batch <= 1:
                raise
            log.warning(
                "out of memory at micro-batch %d; retrying at %d with %dx accumulation",
                attempt.micro_batch,
                attempt.micro_batch // 2,
                -(-params.batch_size // (attempt.micro_batch // 2)),
            )
        # Here, outside the except block, the traceback and the activations its frames held are
        # gone, so the memory can really be returned before the retry.
        attempt.micro_batch //= 2
        attempt.halvings += 1
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _first_attempt(
    params: TrialParams,
    data: TokenizedData,
    model_spec: ModelConfig,
    options: _Options,
    max_micro_batch: int | None,
) -> Attempt:
    """The micro-batch to start at: a resumed trial's, which fitted before, not one that OOMed."""
    attempt = Attempt(micro_batch=min(params.batch_size, max_micro_batch or params.batch_size))
    latest = read_latest(options.checkpoint_dir) if options.checkpoint_dir is not None else None
    if latest is not None and latest.get("fingerprint") == fingerprint(params, data, model_spec):
        attempt.micro_batch = min(attempt.micro_batch, int(latest.get("micro_batch", 1 << 30)))
        attempt.halvings = int(latest.get("micro_batch_halvings", 0))
    return attempt


def _run(
    params: TrialParams,
    data: TokenizedData,
    model_spec: ModelConfig,
    dev: torch.device,
    attempt: Attempt,
    options: _Options,
) -> FineTuneResult:
    """One attempt at the whole trial with the attempt's micro-batch (fine_tune retries on OOM)."""
    trainer = make_trainer(params, data, model_spec, dev, attempt, options.checkpoint_dir)
    history, resume = _restore(trainer)
    resumed_from = len(history)
    best = _best(history, options.select_by)
    end_reason = _replay(history, attempt, options.on_epoch)
    epoch = len(history)
    if end_reason == EndReason.COMPLETE and options.should_stop and options.should_stop():
        end_reason = EndReason.PREEMPTED  # before any new step: the checkpoint stays as it is
    try:
        while end_reason == EndReason.COMPLETE and epoch < params.epochs:
            epoch += 1
            epoch_start = time.perf_counter()
            loss_sum, preempted = trainer.train_epoch(epoch, history, resume, options.should_stop)
            resume = (0, 0.0)
            train_loss = loss_sum.item() / len(data.train_labels)  # the epoch's one sync
            trainer.step_seconds += time.perf_counter() - epoch_start
            if preempted:
                end_reason = EndReason.PREEMPTED
                break
            if not math.isfinite(train_loss):
                end_reason = EndReason.NAN_LOSS
                break
            val_loss, val_accuracy = trainer.evaluate()
            if not math.isfinite(val_loss):
                end_reason = EndReason.NAN_LOSS
                break
            metrics = EpochMetrics(
                epoch, train_loss, val_loss, val_accuracy, time.perf_counter() - epoch_start
            )
            history.append(metrics)
            if _better(metrics, best, options.select_by):
                best = metrics
                if options.best_model_dir is not None:
                    save_best_model(
                        options.best_model_dir, trainer.model, data.tokenizer_dir, data.label_names
                    )
            trainer.checkpoint(history, 0, 0.0)
            attempt.reported = epoch
            if options.on_epoch is not None and options.on_epoch(metrics):
                end_reason = EndReason.STOPPED
    except KeyboardInterrupt:
        end_reason = EndReason.INTERRUPTED  # the last finished epoch's checkpoint stays
    if options.checkpoint_dir and not options.keep_checkpoints and end_reason not in _RESUMABLE:
        remove_checkpoint(options.checkpoint_dir)
    log.debug("trial done: %s after %d epochs", end_reason, epoch)
    return _result(trainer, history, best, end_reason, resumed_from)


def _restore(trainer: Trainer) -> tuple[list[EpochMetrics], tuple[int, float]]:
    """Weights, optimizer moments, schedule position and RNG states of the last checkpoint;
    returns the epochs it holds and (steps into the next epoch, their summed loss)."""
    directory = trainer.checkpoint_dir
    latest = read_latest(directory) if directory is not None else None
    if latest is not None and latest.get("fingerprint") != trainer.fingerprint:
        log.warning("ignoring the checkpoint in %s: it is of another trial", directory)
        latest = None
    if latest is None or directory is None:
        return [], (0, 0.0)
    state = load_checkpoint(directory, latest, trainer.model, trainer.dev)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    step = int(latest.get("step", 0))
    epoch = latest["epoch"]
    log.info("resuming from the checkpoint of epoch %d (+%d steps) in %s", epoch, step, directory)
    history = [EpochMetrics(**m) for m in state["history"]]
    return history, (step, float(state.get("loss_sum", 0.0)))


def _replay(history: list[EpochMetrics], attempt: Attempt, on_epoch: OnEpoch | None) -> str:
    """Pass restored epochs (not yet reported in this call) to the caller; "stopped" if it says
    stop at one of them, else "complete" (nothing ended the run yet)."""
    for metrics in history:
        if metrics.epoch > attempt.reported:
            attempt.reported = metrics.epoch
            if on_epoch is not None and on_epoch(metrics):
                return EndReason.STOPPED
    return EndReason.COMPLETE


def _best(history: list[EpochMetrics], select_by: str) -> EpochMetrics | None:
    best = None
    for metrics in history:
        best = metrics if _better(metrics, best, select_by) else best
    return best


def _better(metrics: EpochMetrics, best: EpochMetrics | None, select_by: str) -> bool:
    """Whether `metrics` is a better epoch than `best` by the study's metric (ties: the earlier)."""
    if best is None:
        return True
    if select_by == "val_accuracy":
        return metrics.val_accuracy > best.val_accuracy
    return metrics.val_loss < best.val_loss


def _result(
    trainer: Trainer,
    history: list[EpochMetrics],
    best: EpochMetrics | None,
    end_reason: str,
    resumed_from: int,
) -> FineTuneResult:
    seconds = trainer.step_seconds
    return FineTuneResult(
        best_val_loss=best.val_loss if best else math.nan,
        best_val_accuracy=best.val_accuracy if best else math.nan,
        best_epoch=best.epoch if best else 0,
        epochs=tuple(history),
        end_reason=end_reason,
        train_seconds=0.0,  # set by fine_tune, which sees the retries too
        samples_per_s=trainer.samples_seen / seconds if seconds else 0.0,
        tokens_per_s=trainer.tokens_seen / seconds if seconds else 0.0,
        peak_memory_mb=peak_memory_mb(trainer.dev),
        device=describe_device(trainer.dev),
        n_params=count_parameters(trainer.model),
        micro_batch=trainer.attempt.micro_batch,
        micro_batch_halvings=trainer.attempt.halvings,
        resumed_from_epoch=resumed_from,
    )


def _check_inputs(params: TrialParams, data: TokenizedData) -> None:
    if params.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {params.batch_size}")
    if params.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {params.epochs}")
    if not params.learning_rate > 0:
        raise ConfigError(f"learning_rate must be > 0, got {params.learning_rate}")
    if not 0 <= params.warmup_ratio < 1:
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {params.warmup_ratio}")
    if len(data.train_labels) == 0 or len(data.val_labels) == 0:
        raise DataError(
            f"empty split: {len(data.train_labels)} train / {len(data.val_labels)} validation rows"
        )
