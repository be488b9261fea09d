"""The fine-tune: plain torch and transformers, never Optuna.

- `types`: what goes in (`TrialParams`) and what comes out (`EpochMetrics`, `FineTuneResult`);
- `loop`: `fine_tune`, one loop to read top to bottom, with resume, preemption and OOM retries;
- `models`: `build_model` for a rung of the ladder; `trial`: `run_trial`, data + model + loop;
- `_trainer`, `_batching`, `_checkpoint`, `_device`: the steps, batches, checkpoints and device.

Importing this package imports torch; `sweep status`, `sweep report` and `--help` never do.
"""

from sweep.training._device import configure_cpu_threads
from sweep.training.loop import fine_tune
from sweep.training.models import build_model, count_parameters
from sweep.training.trial import model_for, prepare_data, run_trial, tokenizer_key
from sweep.training.types import EpochMetrics, FineTuneResult, OnEpoch, TrialParams

__all__ = [
    "EpochMetrics",
    "FineTuneResult",
    "OnEpoch",
    "TrialParams",
    "build_model",
    "configure_cpu_threads",
    "count_parameters",
    "fine_tune",
    "model_for",
    "prepare_data",
    "run_trial",
    "tokenizer_key",
]
