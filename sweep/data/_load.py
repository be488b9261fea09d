"""`load_text_data`: a study's `data:` section -> validated texts and label ids."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sweep.config import DataConfig
from sweep.data._demo import demo_dataset
from sweep.data._files import Split, read_file
from sweep.data._hf import read_hf
from sweep.data._labels import clean, content_hash, encode_labels, stratified_pick
from sweep.errors import DataError


# eq=False: the fields hold numpy arrays, whose == is elementwise, so the generated __eq__ would
# raise; compare content_hash instead.
@dataclass(frozen=True, eq=False)
class TextData:
    """A validated dataset: texts, int64 label ids 0..K-1 and the names of the labels."""

    train_texts: list[str]
    train_labels: np.ndarray
    val_texts: list[str]
    val_labels: np.ndarray
    label_names: tuple[str, ...]
    content_hash: str
    dropped_empty: int
    source: str


def read_splits(spec: DataConfig) -> tuple[Split, Split | None, str]:
    """The train split, the validation split if the data has one, and where they came from."""
    import pandas as pd

    if spec.demo:
        tr_t, tr_l, va_t, va_l = demo_dataset(spec.demo_size, seed=0)
        train = Split(pd.Series(tr_t), pd.Series(tr_l), "demo train", "demo")
        val = Split(pd.Series(va_t), pd.Series(va_l), "demo validation", "demo")
        return train, val, f"demo (synthetic, {spec.demo_size} train rows)"
    if spec.hf is not None:
        src = spec.hf
        train = read_hf(src, src.train_split, spec.text_column, spec.label_column)
        val = None
        if src.validation_split is not None:
            val = read_hf(src, src.validation_split, spec.text_column, spec.label_column)
            if val.class_names != train.class_names:
                raise DataError(f"{val.where}: its label names differ from {train.where}")
        return train, val, train.where
    assert spec.train is not None
    train = read_file(Path(spec.train), spec.text_column, spec.label_column)
    source = f"{train.kind} {spec.train}"
    val = None
    if spec.validation is not None:
        val = read_file(Path(spec.validation), spec.text_column, spec.label_column)
        source += f" (validation: {spec.validation})"
    return train, val, source


def load_text_data(spec: DataConfig) -> TextData:
    """Read, validate, label and split the dataset `spec` names; raises DataError on bad input.

    Nothing is written (but `datasets` keeps its own cache for Hugging Face sources). For a
    67k-row CSV this takes about a tenth of a second, plus ~0.4 s to import pandas the first time.
    """
    train, val, source = read_splits(spec)
    tr_texts, tr_raw, dropped = clean(train, spec.text_column, spec.label_column)
    va_texts: list[str] = []
    va_raw = None
    if val is not None:
        va_texts, va_raw, va_dropped = clean(val, spec.text_column, spec.label_column)
        dropped += va_dropped
    tr_labels, va_labels, names = encode_labels(train, tr_raw, val, va_raw)
    present = np.unique(tr_labels)
    if len(present) < 2:
        raise DataError(
            f"{train.where}: only one class ({names[int(present[0])]!r}) in column "
            f"{spec.label_column!r}; a classifier needs at least 2"
        )
    if va_labels is None:
        val_idx, tr_idx = stratified_pick(
            tr_labels,
            names,
            float(spec.validation_fraction),
            spec.split_seed,
            f"split {len(tr_labels)} rows of {train.where} into train and a stratified "
            f"{spec.validation_fraction:g} validation split",
        )
        va_texts = [tr_texts[i] for i in val_idx]
        va_labels = tr_labels[val_idx]
        tr_texts = [tr_texts[i] for i in tr_idx]
        tr_labels = tr_labels[tr_idx]
        source += (
            f" (validation: stratified {spec.validation_fraction:g} split, seed {spec.split_seed})"
        )
    if spec.limit_train is not None and spec.limit_train < len(tr_labels):
        keep, _ = stratified_pick(
            tr_labels,
            names,
            int(spec.limit_train),
            spec.split_seed,
            f"subsample {spec.limit_train} of {len(tr_labels)} train rows (limit_train)",
        )
        tr_texts = [tr_texts[i] for i in keep]
        tr_labels = tr_labels[keep]
        source += f" (limit_train {spec.limit_train})"
    return TextData(
        train_texts=tr_texts,
        train_labels=tr_labels,
        val_texts=va_texts,
        val_labels=va_labels,
        label_names=names,
        content_hash=content_hash(tr_texts, tr_labels, va_texts, va_labels, names),
        dropped_empty=dropped,
        source=source,
    )


# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def text_data(config: DataConfig) -> TextData:
    """The validated raw data of `config`, read once per process.

    Trials of one worker share it: reading and hashing SST-2 again per trial would be most of the
    sweep's overhead. (A frozen DataConfig hashes: it is the cache's key.)
    """
    return load_text_data(config)
