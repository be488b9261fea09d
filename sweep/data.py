"""Datasets for sweeps: read, validate, label, split, and tokenize (with an on-disk cache).

A dataset comes from exactly one of

* a file: CSV/TSV, JSON lines or Parquet (chosen by suffix), with an optional validation file;
* a Hugging Face ``datasets`` source (`HFSource`): a dataset id or a local directory for
  ``datasets.load_dataset`` (a folder of csv/json/parquet files whose names give the splits, e.g.
  ``train.csv`` + ``validation.csv``), or a folder written by ``Dataset(Dict).save_to_disk``;
* the built-in synthetic demo dataset (`demo_dataset`, see ``sweep/_demo_data.py``).

Labels: string labels get ids in sorted order of their names. Integer labels keep their order:
the sorted distinct values of the train split become ids 0..K-1 and their ``str`` the names, so
labels 0..K-1 map to themselves and e.g. {1, 5} become ids {0, 1} named ("1", "5"). A Hugging Face
``ClassLabel`` column keeps its ids and names. Validation labels must occur in the train split.
Without a validation split, a stratified, seeded one is cut from the train rows; ``limit_train``
then subsamples the train rows (stratified, seeded). Rows whose text is empty are dropped and
counted; a missing label is an error.

Everything a user can get wrong raises `sweep.errors.DataError` naming the file, column and row.
Tokenization and its cache live in ``sweep/_token_cache.py``; `tokenize_data` is the entry point.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sweep._demo_data import demo_dataset
from sweep.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DataSpec",
    "HFSource",
    "TextData",
    "TokenizedData",
    "demo_dataset",
    "load_text_data",
    "load_tokenizer",
    "tokenize_data",
]

log = logging.getLogger(__name__)

MIN_MAX_LENGTH = 8
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face dataset: a hub id (with config ``name``) or a local directory.

    A directory holding ``dataset_dict.json`` or ``state.json`` (``save_to_disk`` output) is read
    with ``datasets.load_from_disk`` (``name`` and ``revision`` do not apply); anything else goes
    to ``datasets.load_dataset(path, name, split=..., revision=...)``, which also reads a local
    folder of csv/json/parquet files named by split (train.csv, validation.csv).
    """

    path: str
    name: str | None = None
    train_split: str = "train"
    validation_split: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class DataSpec:
    """Where a dataset comes from and how to read it (one of train / hf / demo)."""

    train: Path | None = None
    validation: Path | None = None
    hf: HFSource | None = None
    demo: bool = False
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 128
    limit_train: int | None = None
    validation_fraction: float = 0.2
    split_seed: int = 0
    demo_size: int = 2000


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


@dataclass(frozen=True, eq=False)
class TokenizedData:
    """Token ids of every example, flat with offsets: example i is ids[off[i]:off[i+1]]."""

    train_ids: np.ndarray
    train_offsets: np.ndarray
    train_labels: np.ndarray
    val_ids: np.ndarray
    val_offsets: np.ndarray
    val_labels: np.ndarray
    label_names: tuple[str, ...]
    pad_token_id: int
    vocab_size: int
    max_length: int
    tokenizer_dir: Path
    cache_key: str


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Split:
    """One split as read, before cleaning; `where` names it in messages."""

    texts: pd.Series
    labels: pd.Series
    where: str
    kind: str  # csv | tsv | jsonl | parquet | hf | demo: how to name a row in messages
    class_names: tuple[str, ...] | None = None  # a ClassLabel column: labels are ids into this

    def row(self, position: int) -> str:
        """Name the row at `position` (0-based among the rows read) the way a user finds it."""
        if self.kind in ("csv", "tsv"):
            return f"row {position + 1} (line {position + 2})"
        if self.kind == "jsonl":
            return f"line {position + 1}"
        return f"row {position + 1}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _read_file(path: Path, text_column: str, label_column: str) -> _Split:
    """Read a table file by its suffix, keeping texts verbatim (no NA guessing on "null")."""
    import pandas as pd
    import pyarrow as pa

    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"data file {what}: {path}")
    # Only "" is missing: the default NA strings ("NA", "null", "None", ...) are real texts.
    na = {"keep_default_na": False, "na_values": [""]}
    try:
        if kind in ("csv", "tsv"):
            df = pd.read_csv(
                path,
                engine="pyarrow",
                sep="\t" if kind == "tsv" else ",",
                dtype={text_column: str},
                **na,
            )
        elif kind == "jsonl":
            try:
                df = pd.read_json(path, lines=True, engine="pyarrow")
            except pa.ArrowInvalid:
                # pyarrow wants one type per column; mixed columns (1 and "1") need the slow path.
                df = pd.read_json(path, lines=True, dtype=False)
        else:
            df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from exc
    columns = [str(c) for c in df.columns]
    if not columns:  # e.g. an empty JSON lines file
        raise DataError(f"{path}: no rows (empty split)")
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in df.columns:
            raise DataError(
                f"{path}: no {role} column {column!r}; columns are: {', '.join(columns) or 'none'}"
            )
    if len(df) == 0:
        raise DataError(f"{path}: no rows (empty split)")
    return _Split(df[text_column], df[label_column], str(path), kind)


def _read_hf(src: HFSource, split: str, text_column: str, label_column: str) -> _Split:
    """Read one split of a Hugging Face dataset (hub id, local data folder, or save_to_disk)."""
    import datasets

    where = f"hf {src.path}" + (f"/{src.name}" if src.name else "") + f" split {split!r}"
    local = Path(src.path)
    saved = local.is_dir() and any(
        (local / f).is_file() for f in ("dataset_dict.json", "state.json")
    )
    try:
        if saved:
            # A folder written by save_to_disk is not a load_dataset source; load_from_disk is.
            obj = datasets.load_from_disk(str(local))
            if isinstance(obj, datasets.DatasetDict):
                if split not in obj:
                    raise DataError(
                        f"{where}: no split {split!r}; splits are: {', '.join(obj.keys())}"
                    )
                ds = obj[split]
            elif split == src.train_split:
                ds = obj  # a single saved Dataset is the train split, whatever it is called
            else:
                raise DataError(f"{where}: {src.path} holds a single split; there is no {split!r}")
        else:
            ds = datasets.load_dataset(src.path, src.name, split=split, revision=src.revision)
    except DataError:
        raise
    except Exception as exc:
        # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError for an
        # unknown split, connection errors); all mean "this source cannot be read".
        raise DataError(f"cannot load {where}: {_one_line(exc)}") from exc
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in ds.column_names:
            raise DataError(
                f"{where}: no {role} column {column!r}; columns are: {', '.join(ds.column_names)}"
            )
    if len(ds) == 0:
        raise DataError(f"{where}: no rows (empty split)")
    feature = ds.features[label_column]
    class_names = tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    df = ds.select_columns([text_column, label_column]).to_pandas()
    return _Split(df[text_column], df[label_column], where, "hf", class_names)


# ---------------------------------------------------------------------------------------------
# Cleaning and labels


def _clean(split: _Split, text_column: str, label_column: str) -> tuple[list[str], pd.Series, int]:
    """Drop empty texts (counted), reject missing labels; returns texts, labels, dropped."""
    import pandas as pd

    texts = split.texts
    # Numbers in a text column are text too; .str needs strings (NaN is caught by isna).
    as_str = texts if pd.api.types.is_string_dtype(texts.dtype) else texts.astype(str)
    empty = (texts.isna() | as_str.str.strip().eq("")).to_numpy(dtype=bool, copy=True)
    labels = split.labels
    missing = labels.isna().to_numpy(dtype=bool, copy=True)
    if split.class_names is not None:
        # ClassLabel uses -1 for "no label" (e.g. GLUE test splits).
        missing |= labels.fillna(-1).to_numpy() < 0
    missing &= ~empty
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{split.where}: {int(missing.sum())} of {len(labels)} rows have no label in column "
            f"{label_column!r} (first: {split.row(first)})"
        )
    keep = ~empty
    n_dropped = int(empty.sum())
    if not keep.any():
        raise DataError(
            f"{split.where}: all {len(texts)} texts in column {text_column!r} are empty"
        )
    text_list = [t if isinstance(t, str) else str(t) for t in texts[keep].tolist()]
    return text_list, labels[keep], n_dropped


def _integral(values: pd.Series) -> pd.Series | None:
    """The labels as int64 if they are all whole numbers (1.0 counts), else None."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):
        return None
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("int64")
    if pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype=float)
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return values.astype("int64")
    return None


def _reject_fractions(split: _Split, values: pd.Series) -> None:
    """Fractional numbers are regression targets, not classes; say so instead of guessing."""
    import pandas as pd

    if pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype=float)
        bad = np.flatnonzero(arr != np.round(arr))
        if len(bad):
            row = split.row(int(values.index[bad[0]]))
            raise DataError(
                f"{split.where}: label {arr[bad[0]]:g} at {row} is not a whole number; "
                "labels must be classes (strings or integers)"
            )


def _encode_labels(
    train: _Split, train_labels: pd.Series, val: _Split | None, val_labels: pd.Series | None
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Label ids and names; see the module docstring for the rules."""
    if train.class_names is not None:
        names = train.class_names
        ids = {}
        for split, values in ((train, train_labels), (val, val_labels)):
            if split is None or values is None:
                continue
            ids[split.where] = values.to_numpy(dtype=np.int64)
            out_of_range = np.flatnonzero(ids[split.where] >= len(names))
            if len(out_of_range):
                row = split.row(int(values.index[out_of_range[0]]))
                raise DataError(
                    f"{split.where}: label id {ids[split.where][out_of_range[0]]} at {row} is not "
                    f"one of the {len(names)} ClassLabel names"
                )
        return ids[train.where], None if val is None else ids[val.where], names

    for split, values in ((train, train_labels), (val, val_labels)):
        if split is not None and values is not None:
            _reject_fractions(split, values)
    tr_int = _integral(train_labels)
    va_int = None if val_labels is None else _integral(val_labels)
    if tr_int is not None and (val_labels is None or va_int is not None):
        tr_values, va_values = tr_int.to_numpy(), None if va_int is None else va_int.to_numpy()
        classes = np.unique(tr_values)
        names = tuple(str(int(c)) for c in classes)
    else:
        # Strings (or a mix): whole-number floats become "1", not "1.0", so 1 and "1" agree.
        def as_names(values: pd.Series) -> np.ndarray:
            ints = _integral(values)
            src = ints if ints is not None else values
            return np.array([str(v) for v in src.tolist()], dtype=object)

        tr_values = as_names(train_labels)
        va_values = None if val_labels is None else as_names(val_labels)
        classes = np.array(sorted(set(tr_values.tolist())), dtype=object)
        names = tuple(str(c) for c in classes)
    tr_ids = np.searchsorted(classes, tr_values).astype(np.int64)
    va_ids = None
    if va_values is not None and val is not None:
        pos = np.searchsorted(classes, va_values).clip(0, len(classes) - 1)
        unknown = classes[pos] != va_values
        if unknown.any():
            bad = int(np.flatnonzero(unknown)[0])
            row = val.row(int(val_labels.index[bad]))
            raise DataError(
                f"{val.where}: label {str(va_values[bad])!r} at {row} does not occur in the "
                f"train split (labels: {', '.join(names)})"
            )
        va_ids = pos.astype(np.int64)
    return tr_ids, va_ids, names


def _stratified_pick(
    labels: np.ndarray, names: tuple[str, ...], size: int | float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept in file order) of a stratified, seeded sample of `size` and the rest.

    `size` is passed as sklearn's test_size when it is a fraction (the validation split), as
    train_size when it is a count (limit_train), so that sklearn's own reasons read right.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    try:
        if isinstance(size, float):
            rest, picked = train_test_split(idx, test_size=size, stratify=labels, random_state=seed)
        else:
            picked, rest = train_test_split(
                idx, train_size=size, stratify=labels, random_state=seed
            )
    except ValueError as exc:
        ids, counts = np.unique(labels, return_counts=True)
        per_label = ", ".join(f"{names[i]!r}: {n}" for i, n in zip(ids, counts, strict=True))
        raise DataError(f"cannot {what} (rows per label: {per_label}): {exc}") from exc
    return np.sort(picked), np.sort(rest)


def content_hash(
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    val_texts: Sequence[str],
    val_labels: np.ndarray,
    label_names: tuple[str, ...],
) -> str:
    """sha256 of texts, labels and label names; lengths are hashed too, so no join is ambiguous."""
    h = hashlib.sha256(b"sweep-text-data-v1\0")
    h.update(json.dumps(label_names).encode())
    for texts, labels in ((train_texts, train_labels), (val_texts, val_labels)):
        encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
        h.update(np.array([len(e) for e in encoded], dtype=np.int64).tobytes())
        h.update(b"".join(encoded))
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# load_text_data


def _check_spec(spec: DataSpec) -> None:
    sources = [
        name
        for name, given in (("train", spec.train), ("hf", spec.hf), ("demo", spec.demo or None))
        if given is not None
    ]
    if len(sources) != 1:
        raise DataError(
            "data: give exactly one of train (a file), hf (a Hugging Face dataset) or demo; got "
            + (", ".join(sources) or "none")
        )
    if spec.validation is not None and spec.train is None:
        raise DataError("data: validation (a file) needs train (a file)")
    if spec.max_length < MIN_MAX_LENGTH:
        raise DataError(f"data: max_length {spec.max_length} is below {MIN_MAX_LENGTH}")
    if not 0.0 < spec.validation_fraction < 1.0 or not math.isfinite(spec.validation_fraction):
        raise DataError(
            f"data: validation_fraction {spec.validation_fraction} must be between 0 and 1"
        )
    if spec.limit_train is not None and spec.limit_train < 1:
        raise DataError(f"data: limit_train {spec.limit_train} must be at least 1")
    if spec.demo and spec.demo_size < 30:
        raise DataError(f"data: demo_size {spec.demo_size} must be at least 30")
    if spec.text_column == spec.label_column:
        raise DataError(f"data: text_column and label_column are both {spec.text_column!r}")


def _read_splits(spec: DataSpec) -> tuple[_Split, _Split | None, str]:
    import pandas as pd

    if spec.demo:
        tr_t, tr_l, va_t, va_l = demo_dataset(spec.demo_size, seed=0)
        train = _Split(pd.Series(tr_t), pd.Series(tr_l), "demo train", "demo")
        val = _Split(pd.Series(va_t), pd.Series(va_l), "demo validation", "demo")
        return train, val, f"demo (synthetic, {spec.demo_size} train rows)"
    if spec.hf is not None:
        src = spec.hf
        train = _read_hf(src, src.train_split, spec.text_column, spec.label_column)
        val = None
        if src.validation_split is not None:
            val = _read_hf(src, src.validation_split, spec.text_column, spec.label_column)
            if val.class_names != train.class_names:
                raise DataError(f"{val.where}: its label names differ from {train.where}")
        return train, val, train.where
    assert spec.train is not None
    train = _read_file(Path(spec.train), spec.text_column, spec.label_column)
    source = f"{train.kind} {spec.train}"
    val = None
    if spec.validation is not None:
        val = _read_file(Path(spec.validation), spec.text_column, spec.label_column)
        source += f" (validation: {spec.validation})"
    return train, val, source


def load_text_data(spec: DataSpec) -> TextData:
    """Read, validate, label and split the dataset `spec` names; raises DataError on bad input.

    Nothing is written (but `datasets` keeps its own cache for Hugging Face sources). For a
    67k-row CSV this takes about a tenth of a second, plus ~0.4 s to import pandas the first time.
    """
    _check_spec(spec)
    train, val, source = _read_splits(spec)
    tr_texts, tr_raw, dropped = _clean(train, spec.text_column, spec.label_column)
    va_texts: list[str] = []
    va_raw = None
    if val is not None:
        va_texts, va_raw, va_dropped = _clean(val, spec.text_column, spec.label_column)
        dropped += va_dropped
    tr_labels, va_labels, names = _encode_labels(train, tr_raw, val, va_raw)
    present = np.unique(tr_labels)
    if len(present) < 2:
        raise DataError(
            f"{train.where}: only one class ({names[int(present[0])]!r}) in column "
            f"{spec.label_column!r}; a classifier needs at least 2"
        )
    if va_labels is None:
        val_idx, tr_idx = _stratified_pick(
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
        keep, _ = _stratified_pick(
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
# Tokenization (the work is in _token_cache)


def load_tokenizer(
    tokenizer_dir: Path, *, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """Load a tokenizer saved with save_pretrained (e.g. `TokenizedData.tokenizer_dir`)."""
    from sweep import _token_cache

    return _token_cache.load_tokenizer(Path(tokenizer_dir), trust_remote_code=trust_remote_code)


def tokenize_data(
    data: TextData,
    *,
    pretrained: str | None,
    max_length: int,
    cache_dir: Path,
    trust_remote_code: bool = False,
    bpe_vocab_size: int = 8192,
) -> TokenizedData:
    """Token ids of `data`, from the cache under `cache_dir` or built (and cached) now.

    ``pretrained=None`` trains a byte-level BPE on the train texts (cached by content hash);
    otherwise the tokenizer of that local directory or hub id is used, with pad = eos when it
    has no pad token. Texts are truncated to `max_length` tokens. The arrays are cached keyed by
    (content hash, tokenizer identity, max_length) and published with an atomic rename, so any
    number of processes may call this at once. Raises DataError for max_length < 8 and
    ModelError when the pretrained tokenizer cannot be loaded; nothing is written then.
    """
    from sweep import _token_cache

    if max_length < MIN_MAX_LENGTH:
        raise DataError(f"max_length {max_length} is below {MIN_MAX_LENGTH}")
    entry = _token_cache.get_or_build(
        train_texts=data.train_texts,
        val_texts=data.val_texts,
        content_hash=data.content_hash,
        pretrained=pretrained,
        max_length=max_length,
        cache_dir=Path(cache_dir),
        trust_remote_code=trust_remote_code,
        bpe_vocab_size=bpe_vocab_size,
    )
    return TokenizedData(
        train_ids=entry.train_ids,
        train_offsets=entry.train_offsets,
        train_labels=np.asarray(data.train_labels, dtype=np.int64),
        val_ids=entry.val_ids,
        val_offsets=entry.val_offsets,
        val_labels=np.asarray(data.val_labels, dtype=np.int64),
        label_names=data.label_names,
        pad_token_id=entry.pad_token_id,
        vocab_size=entry.vocab_size,
        max_length=max_length,
        tokenizer_dir=entry.tokenizer_dir,
        cache_key=entry.key,
    )
