"""Cleaning a split and turning its labels into ids: empty texts dropped (and counted), missing
and fractional labels refused, validation labels checked against the train split's, and the
stratified, seeded picks of a validation split and of `limit_train`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sweep.data._files import Split
from sweep.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def _reject_nested(split: Split, role: str, column: str, values: pd.Series) -> None:
    """A list or an object (JSON, Parquet) is not one text or label; str() of it would pass."""
    if values.dtype != object:
        return
    nested = values.map(lambda v: isinstance(v, list | tuple | dict | np.ndarray))
    if nested.any():
        first = int(np.flatnonzero(nested.to_numpy(dtype=bool))[0])
        what = "an object" if isinstance(values.iloc[first], dict) else "a list"
        must = "strings or integers" if role == "label" else "strings"
        raise DataError(
            f"{split.where}: the {role} at {split.row(first)} in column {column!r} is {what}, "
            f"not one value; {role}s must be {must}"
        )


def _blank_strings(values: pd.Series) -> np.ndarray:
    """Where a value is a string of white space only: a label nobody wrote (CSV reads "" as NA)."""
    import pandas as pd

    if not pd.api.types.is_string_dtype(values.dtype):  # True for object too
        return np.zeros(len(values), dtype=bool)
    # The distinct labels are few: test those, not every row.
    blank = [v for v in values.dropna().unique() if isinstance(v, str) and not v.strip()]
    if not blank:
        return np.zeros(len(values), dtype=bool)
    return values.isin(blank).to_numpy(dtype=bool)


def clean(split: Split, text_column: str, label_column: str) -> tuple[list[str], pd.Series, int]:
    """Drop empty texts (counted), reject missing labels; returns texts, labels, dropped."""
    import pandas as pd

    texts = split.texts
    labels = split.labels
    _reject_nested(split, "text", text_column, texts)
    _reject_nested(split, "label", label_column, labels)
    # Numbers in a text column are text too; .str needs strings (NaN is caught by isna).
    as_str = texts if pd.api.types.is_string_dtype(texts.dtype) else texts.astype(str)
    empty = (texts.isna() | as_str.str.strip().eq("")).to_numpy(dtype=bool, copy=True)
    missing = labels.isna().to_numpy(dtype=bool, copy=True) | _blank_strings(labels)
    if split.class_names is not None:
        # ClassLabel uses -1 for "no label" (e.g. GLUE test splits).
        missing |= labels.fillna(-1).to_numpy() < 0
    missing &= ~empty
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{split.where}: {int(missing.sum())} of {len(labels)} rows have no label in column "
            f"{label_column!r} (first: {split.row(first)}); give every row a label, or remove "
            "the rows without one"
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


def _reject_fractions(split: Split, values: pd.Series) -> None:
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


def encode_labels(
    train: Split, train_labels: pd.Series, val: Split | None, val_labels: pd.Series | None
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


def stratified_pick(
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
