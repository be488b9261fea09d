"""Every key sweep writes on a study or a trial, and the reasons a trial ends: one home for what
is stored, imported by every writer and reader (syne-tune keeps its `constants.py` the same way).

The values are the strings existing databases hold: renaming a member's value would make older
studies unreadable. Keys are `StrEnum` members, so they are plain strings wherever Optuna or JSON
sees them (`trial.user_attrs[TrialKey.END_REASON]` is `trial.user_attrs["end_reason"]`).
"""

from __future__ import annotations

import enum

__all__ = [
    "CONFIRM_SUFFIX",
    "SESSION_PREFIX",
    "EndReason",
    "StudyKey",
    "SystemKey",
    "TrialKey",
]


class StudyKey(enum.StrEnum):
    """User attributes of a study."""

    CONFIG = "config"  # the resolved study file (StudyConfig.resolved()), password hidden
    SIGNATURE = "space_signature"  # compared when a study is continued
    METRIC = "metric"  # "val_loss" | "val_accuracy" | ...
    DATA_HASH = "data_content_hash"  # TextData.content_hash of the data the trials trained on
    DATA_SOURCE = "data_source"  # where the data came from, in words
    DATA_DROPPED = "data_dropped_empty"  # rows dropped because their text was empty
    LABEL_NAMES = "label_names"  # the data's label names, by id
    SWEEP_VERSION = "sweep_version"
    CONFIRM_OF = "confirm_of"  # on NAME.confirm: {"study": NAME, "space_signature", ...}


# One user attribute per `sweep run` process: session:<start>:<host>:<pid>:<id> ->
# {"wall_seconds", "train_seconds", "wait_seconds", "trials", ...} (the overhead figure).
SESSION_PREFIX = "session:"
# `sweep confirm NAME` stores its runs in the study NAME.confirm.
CONFIRM_SUFFIX = ".confirm"


class TrialKey(enum.StrEnum):
    """User attributes of a trial."""

    END_REASON = "end_reason"  # an EndReason
    ERROR = "error"  # the one-line message of an error or an infrastructure failure
    PRUNED_AT_EPOCH = "pruned_at_epoch"
    # Who ran it and how many times.
    WORKER = "worker"  # host:pid
    GPU = "gpu"  # the worker's CUDA_VISIBLE_DEVICES
    ATTEMPT = "attempt"  # 1, then 2 for the first retry of a lost trial, ...
    RETRY_OF = "retry_of"  # the trial number a retry re-runs
    RETRIED = "retried"  # on a lost/preempted/infrastructure trial: a retry was queued
    RETRY_REASON = "retry_reason"  # the end reason of the trial a retry re-runs
    CHECKPOINT_OF = "checkpoint_of"  # the first trial of the retry chain (its folders)
    SEED = "seed"  # the training seed
    # What the fine-tune achieved and cost.
    BEST_EPOCH = "best_epoch"
    EPOCHS_RUN = "epochs_run"
    EPOCH_HISTORY = "epoch_history"  # per epoch: losses, metrics, seconds
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    VAL_LOSS = "val_loss"  # at the best epoch
    VAL_ACCURACY = "val_accuracy"  # at the best epoch
    TRAIN_SECONDS = "train_seconds"  # wall seconds inside the fine-tune
    SAMPLES_PER_S = "samples_per_s"
    TOKENS_PER_S = "tokens_per_s"
    PEAK_MEMORY_MB = "peak_memory_mb"
    DEVICE = "device"
    GPUS = "gpus"  # GPUs used (0 on CPU)
    N_PARAMS = "n_params"
    MICRO_BATCH = "micro_batch"
    MICRO_BATCH_HALVINGS = "micro_batch_halvings"
    # The runs of `sweep confirm`.
    CONFIRM_KEY = "confirm_key"  # the configuration a run repeats (its parameters as JSON)
    CONFIRM_SOURCE_TRIAL = "confirm_source_trial"  # the original trial's number


class SystemKey(enum.StrEnum):
    """System attributes of a trial (sweep's own bookkeeping, not shown to users)."""

    CLAIM = "sweep:claim"  # the token of the claim that took the trial (see sweep.storage)


class EndReason(enum.StrEnum):
    """Why a trial ended (the `end_reason` user attribute)."""

    COMPLETE = "complete"  # every epoch ran: COMPLETE
    STOPPED = "stopped"  # the pruner stopped it after an epoch: PRUNED
    NAN_LOSS = "nan-loss"  # the loss went to NaN/inf: FAIL, counted (its parameters did it)
    ERROR = "error"  # an error inside the fine-tune: FAIL, counted
    INTERRUPTED = "interrupted"  # Ctrl-C: FAIL, not counted
    PREEMPTED = "preempted"  # SIGTERM: checkpointed, FAIL, queued again
    WORKER_LOST = "worker-lost"  # its worker stopped sending heartbeats: FAIL, queued again
    ORPHAN = "orphan"  # a trial row no worker ever ran: FAIL, not counted
    INFRASTRUCTURE = "infrastructure"  # a full disk, a database that stayed away: queued again
