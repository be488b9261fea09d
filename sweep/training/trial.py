"""One trial of a sweep from plain parameters: data, tokenizer, model and fine-tune, no Optuna.

The objective calls `run_trial`: it looks the model size up in the study's ladder, loads the data
once per process, takes the tokenized arrays from the on-disk cache that every worker on the
machine shares, and fine-tunes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sweep.config import DataConfig, ModelConfig
from sweep.data import TokenizedData, text_data, tokenize_data
from sweep.errors import ModelError
from sweep.training.loop import fine_tune
from sweep.training.types import FineTuneResult, OnEpoch, TrialParams

__all__ = ["model_for", "prepare_data", "run_trial", "tokenizer_key"]


def model_for(size: str, models: Mapping[str, ModelConfig]) -> ModelConfig:
    """The ladder entry named `size`, or a ModelError naming the sizes there are."""
    try:
        return models[size]
    except KeyError:
        known = ", ".join(sorted(models)) or "none"
        raise ModelError(f"unknown model size {size!r}; the ladder has: {known}") from None


def tokenizer_key(model: ModelConfig) -> str | None:
    """Which tokenizer `model` uses: its pretrained source, or None for the study's own BPE
    (every from-config shape shares that one)."""
    return model.pretrained


def prepare_data(data: DataConfig, model: ModelConfig, cache_dir: Path) -> TokenizedData:
    """Load and tokenize the data for one model (from the cache when it is there)."""
    return tokenize_data(
        text_data(data),
        pretrained=model.pretrained,
        trust_remote_code=model.trust_remote_code,
        max_length=data.max_length,
        cache_dir=cache_dir,
    )


def run_trial(
    params: TrialParams,
    data: DataConfig,
    models: Mapping[str, ModelConfig],
    *,
    cache_dir: Path,
    on_epoch: OnEpoch | None = None,
    checkpoint_dir: Path | None = None,
    best_model_dir: Path | None = None,
    device: str | None = None,
    select_by: str = "val_loss",
    should_stop: Callable[[], bool] | None = None,
) -> FineTuneResult:
    """Fine-tune the model size `params.model_size` on the study's data and return the result.

    `select_by` (val_loss or val_accuracy, the study's metric) picks the best epoch: the trial's
    value and the weights kept in `best_model_dir`. `should_stop`: see `fine_tune` (preemption).
    """
    model = model_for(params.model_size, models)
    return fine_tune(
        params,
        prepare_data(data, model, cache_dir),
        model,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoint_dir,
        best_model_dir=best_model_dir,
        device=device,
        select_by=select_by,
        should_stop=should_stop,
    )
