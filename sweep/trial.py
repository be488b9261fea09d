"""One trial of a sweep from plain parameters: data, tokenizer, model and fine-tune, no Optuna.

The objective calls `run_trial`: it looks the model size up in the study's ladder, loads the data
once per process, takes the tokenized arrays from the on-disk cache that every worker on the
machine shares, and fine-tunes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

from sweep.data import DataSpec, TextData, TokenizedData, load_text_data, tokenize_data
from sweep.errors import ModelError
from sweep.models import ModelSpec, PretrainedModel
from sweep.train import FineTuneResult, OnEpoch, TrialParams, fine_tune


@lru_cache(maxsize=4)
def text_data(spec: DataSpec) -> TextData:
    """The validated raw data of `spec`, read once per process.

    Trials of one worker share it: reading and hashing SST-2 again per trial would be most of the
    sweep's overhead.
    """
    return load_text_data(spec)


def model_spec_for(size: str, models: Mapping[str, ModelSpec]) -> ModelSpec:
    """The ladder entry named `size`, or a ModelError naming the sizes there are."""
    try:
        return models[size]
    except KeyError:
        known = ", ".join(sorted(models)) or "none"
        raise ModelError(f"unknown model size {size!r}; the ladder has: {known}") from None


def prepare_data(data_spec: DataSpec, model_spec: ModelSpec, cache_dir: Path) -> TokenizedData:
    """Load and tokenize the data for one model (from the cache when it is there)."""
    pretrained = model_spec if isinstance(model_spec, PretrainedModel) else None
    return tokenize_data(
        text_data(data_spec),
        pretrained=pretrained.source if pretrained else None,
        trust_remote_code=pretrained.trust_remote_code if pretrained else False,
        max_length=data_spec.max_length,
        cache_dir=cache_dir,
    )


def run_trial(
    params: TrialParams,
    data_spec: DataSpec,
    models: Mapping[str, ModelSpec],
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
    model_spec = model_spec_for(params.model_size, models)
    data = prepare_data(data_spec, model_spec, cache_dir)
    return fine_tune(
        params,
        data,
        model_spec,
        on_epoch=on_epoch,
        checkpoint_dir=checkpoint_dir,
        best_model_dir=best_model_dir,
        device=device,
        select_by=select_by,
        should_stop=should_stop,
    )
