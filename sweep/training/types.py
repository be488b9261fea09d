"""What goes into a fine-tune and what comes out: plain dataclasses, no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["EpochMetrics", "FineTuneResult", "OnEpoch", "TrialParams"]


@dataclass(frozen=True)
class TrialParams:
    """The hyperparameters of one trial."""

    learning_rate: float
    batch_size: int  # effective batch = micro_batch * accumulation
    epochs: int
    model_size: str
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch achieved."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float  # wall seconds of this epoch (train + eval)


OnEpoch = Callable[[EpochMetrics], bool | None]  # return True to stop after this epoch (pruning)


@dataclass(frozen=True)
class FineTuneResult:
    """The outcome of one fine-tune: its best epoch, why it ended, and what it cost."""

    best_val_loss: float  # nan if no epoch finished
    best_val_accuracy: float  # accuracy at best_epoch
    best_epoch: int  # 0 if none
    epochs: tuple[EpochMetrics, ...]
    end_reason: str  # an EndReason: complete, stopped, nan-loss, interrupted, preempted
    train_seconds: float  # wall seconds of the whole call (OOM retries included)
    samples_per_s: float  # training samples per second of training steps (eval excluded)
    tokens_per_s: float  # real (non-pad) training tokens per second of training steps
    peak_memory_mb: float  # CUDA max allocated, or process peak RSS on CPU
    device: str  # e.g. "cpu (2 threads)" / "cuda:0 NVIDIA H200"
    n_params: int
    micro_batch: int
    micro_batch_halvings: int
    resumed_from_epoch: int  # 0 for a fresh run
