"""Datasets for sweeps: read, validate, label, split, and tokenize (with an on-disk cache).

A dataset comes from exactly one of

* a file: CSV/TSV, JSON lines or Parquet (chosen by suffix), with an optional validation file;
* a Hugging Face ``datasets`` source (`HFConfig`): a dataset id or a local directory for
  ``datasets.load_dataset`` (a folder of csv/json/parquet files whose names give the splits, e.g.
  ``train.csv`` + ``validation.csv``), or a folder written by ``Dataset(Dict).save_to_disk``;
* the built-in synthetic demo dataset (`demo_dataset`, see ``_demo``).

Labels: string labels get ids in sorted order of their names. Integer labels keep their order:
the sorted distinct values of the train split become ids 0..K-1 and their ``str`` the names, so
labels 0..K-1 map to themselves and e.g. {1, 5} become ids {0, 1} named ("1", "5"). A Hugging Face
``ClassLabel`` column keeps its ids and names. Validation labels must occur in the train split.
Without a validation split, a stratified, seeded one is cut from the train rows; ``limit_train``
then subsamples the train rows (stratified, seeded). Rows whose text is empty are dropped and
counted; a missing label is an error.

Everything a user can get wrong raises `sweep.errors.DataError` naming the file, column and row.
A file is checked cheaply before the parse (empty, another format or encoding, the other table
separator, a duplicate column name); a parse error is explained, naming the line, after it.
Tokenization and its cache live in ``_tokenize`` and ``_token_cache``; `tokenize_data` is the
entry point. Every module reads the study file's `DataConfig` as it is (one schema).
"""

from __future__ import annotations

import os
from pathlib import Path

from sweep.data._demo import demo_dataset
from sweep.data._load import TextData, load_text_data, text_data
from sweep.data._tokenize import TokenizedData, load_tokenizer, tokenize_data

__all__ = [
    "CACHE_ENV",
    "TextData",
    "TokenizedData",
    "default_cache_dir",
    "demo_dataset",
    "load_text_data",
    "load_tokenizer",
    "text_data",
    "tokenize_data",
]

CACHE_ENV = "SWEEP_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$SWEEP_CACHE_DIR``, else ``~/.cache/sweep`` (tokenizers and tokenized datasets)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "sweep"
