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
A file is checked cheaply before the parse (empty, another format or encoding, the other table
separator, a duplicate column name); a parse error is explained, naming the line, after it.
Tokenization and its cache live in ``sweep/_token_cache.py``; `tokenize_data` is the entry point.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sweep._demo_data import demo_dataset
from sweep.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
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
    path: Path | None = None  # the file read, to find the line of a row in it

    def row(self, position: int) -> str:
        """Name the row at `position` (0-based among the rows read) the way a user finds it."""
        if self.kind in ("csv", "tsv"):
            return f"row {position + 1} (line {self._line(position)})"
        if self.kind == "jsonl":
            return f"line {self._line(position)}"
        return f"row {position + 1}"

    def _line(self, position: int) -> int:
        # Only messages need it, so the file is read again then: blank lines and texts that span
        # lines push a row further down than its position says.
        found = None if self.path is None else _record_line(self.path, self.kind, position)
        return found if found is not None else position + (2 if self.kind in _SEPARATORS else 1)


_Columns = tuple["pd.Series", "pd.Series"]  # texts, labels, indexed 0..n-1 in file order
_HEAD_BYTES = 1 << 16  # how much of a file the cheap checks before a parse look at
_SEPARATORS = {"csv": ",", "tsv": "\t"}
_SEPARATOR_NAMES = {"csv": ("comma", "commas"), "tsv": ("tab", "tabs")}
_FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON lines", "parquet": "Parquet"}
# Other formats under a table's suffix, told by their first bytes: (magic, what it is, suffix).
_MAGIC = (
    (b"PAR1", "Parquet", ".parquet"),
    (b"\x1f\x8b", "gzip-compressed", None),
    (b"PK\x03\x04", "a zip archive (an Excel workbook?)", None),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_JSON_TYPES = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(_HEAD_BYTES)


def _check_text_file(path: Path, kind: str, text_column: str, label_column: str) -> None:
    """Refuse, before a parser gets it, a file that is empty, binary, or not UTF-8 by its BOM."""
    head = _head(path)
    name = _FORMAT_NAMES[kind]
    if not head.removeprefix(codecs.BOM_UTF8).strip() and path.stat().st_size <= len(head):
        if kind == "jsonl":
            example = json.dumps({text_column: "...", label_column: "..."})
            layout = f"one object per line, like {example}"
        else:
            columns = f"{text_column}{_SEPARATORS[kind]}{label_column}".replace("\t", "<tab>")
            layout = f"a header line naming the columns ({columns}) and one row per example"
        raise DataError(f"{path}: the file is empty; a {name} file needs {layout}")
    for magic, what, suffix in _MAGIC:
        if head.startswith(magic):
            fix = f"rename it {path.stem}{suffix}" if suffix else f"save it as {name} text"
            raise DataError(f"{path}: the file is {what}, not {name}; {fix}")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise DataError(
                f"{path}: the file is {encoding} text (it starts with a {encoding} byte order "
                "mark); save it as UTF-8"
            )
    nul = head.find(b"\0")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise DataError(
            f"{path}: the file holds NUL bytes (line {line}), so it is binary or UTF-16/32 text, "
            f"not a UTF-8 {name} file; save it as UTF-8 text"
        )


def _not_utf8(path: Path) -> DataError:
    """The error for a file that is not UTF-8, naming its first line that is not."""
    with path.open("rb") as f:
        # A line break never occurs inside a UTF-8 sequence, so each line decodes on its own.
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(
                    f"{path}: line {number} is not valid UTF-8 (byte 0x{line[exc.start]:02x}); "
                    "the file is in another encoding (latin-1 or Windows-1252?): save it as UTF-8"
                )
    return DataError(f"{path}: the file is not valid UTF-8; save it as UTF-8")


def _refuse_duplicates(path: Path, names: Sequence[str], where: str) -> None:
    """Two columns of one name are ambiguous (pandas would rename the second `name.1`)."""
    first: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if not name.strip():
            continue  # blank names (a spreadsheet's trailing separators) are never chosen
        if name in first:
            raise DataError(
                f"{path}: column {name!r} appears twice in the {where} "
                f"(columns {first[name]} and {number}); rename one"
            )
        first[name] = number


def _require_columns(
    path: Path, columns: Sequence[str], text_column: str, label_column: str
) -> None:
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in columns:
            # "text, label" is a header whose second name starts with a space.
            spaced = [c for c in columns if c.strip() == column]
            hint = f"; {spaced[0]!r} has spaces around the name: remove them" if spaced else ""
            raise DataError(
                f"{path}: no {role} column {column!r}; columns are: {', '.join(columns) or 'none'}"
                + hint
            )


# CSV and TSV


def _csv_records(path: Path, kind: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each record, header first, skipping empty lines.

    The csv module's reading agrees with pyarrow's on quotes and line breaks but counts lines,
    so it finds what pyarrow cannot place (a bad row, the line of a row).
    """
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=_SEPARATORS[kind])
        start = 1
        for fields in reader:
            if fields:  # pyarrow skips empty lines too
                yield start, reader.line_num, fields
            start = reader.line_num + 1


def _csv_header(path: Path, kind: str, text_column: str, label_column: str) -> list[str]:
    """The header's column names, parsed with quotes respected; DataError if the file is unfit."""
    _check_text_file(path, kind, text_column, label_column)
    try:
        first = next(_csv_records(path, kind), None)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except csv.Error as exc:
        raise DataError(f"{path}: cannot parse the header line: {exc}") from exc
    header = [] if first is None else first[2]
    if len(header) == 1:  # a table needs two columns: is another separator in use?
        _refuse_other_separator(path, kind, header[0])
    _refuse_duplicates(path, header, "header")
    _require_columns(path, header, text_column, label_column)
    return header


def _refuse_other_separator(path: Path, kind: str, header: str) -> None:
    """Say which separator a one-column header uses instead of the suffix's, if it holds one."""
    mine = _SEPARATOR_NAMES[kind][1]
    other = "tsv" if kind == "csv" else "csv"
    if _SEPARATORS[other] in header:
        name, names = _SEPARATOR_NAMES[other]
        fix = f"rename it {path.stem}.{other}"
    elif ";" in header:  # what a spreadsheet writes where the comma is the decimal point
        name, names = "semicolon", "semicolons"
        fix = f"save it with {mine} between the values"
    else:
        return
    raise DataError(
        f"{path}: the header has {names} and no {mine}, so the file looks {name}-separated; {fix}"
    )


def _header_only(path: Path, kind: str, header: list[str]) -> DataError:
    return DataError(
        f"{path}: no rows (empty split): the file holds only the header line "
        f"{_SEPARATORS[kind].join(header)!r}; add one row per example under it"
    )


def _bad_record(path: Path, kind: str, header: list[str]) -> DataError | None:
    """The error naming the first row whose fields do not match the header (pyarrow's names none).

    None when the csv module finds no such row; the caller then passes on pyarrow's message.
    """
    records = _csv_records(path, kind)
    try:
        next(records)  # the header
        bad = next((r for r in records if len(r[2]) != len(header)), None)
        at_end = next(records, None) is None
    except (csv.Error, UnicodeDecodeError):
        return None
    if bad is None:
        return None
    start, end, fields = bad
    # A quote never closed makes the rest of the file one field, line breaks and all.
    if at_end and end > start and fields[-1].endswith(("\n", "\r")):
        return DataError(
            f"{path}: the quote that opens line {start} is never closed, so the rest of the file "
            'is one text; close it, and write a quote inside a quoted text as two ("")'
        )
    where = f"line {start}" if start == end else f"the row on lines {start}-{end}"
    other = "tsv" if kind == "csv" else "csv"
    (one, mine), theirs = _SEPARATOR_NAMES[kind], _SEPARATOR_NAMES[other][1]
    if len(fields) > len(header):
        fix = f"quote a text that holds a {one}"
    elif any(_SEPARATORS[other] in field for field in fields):
        fix = f"separate its values with {mine}, not {theirs}"
    else:
        fix = "give each row a value for every column"
    shown = ", ".join(header[:8]) + (", …" if len(header) > 8 else "")
    count = f"{len(fields)} field" + ("s" if len(fields) != 1 else "")
    return DataError(
        f"{path}: {where} has {count} but the header has {len(header)} ({shown}); {fix}"
    )


def _read_csv(path: Path, kind: str, text_column: str, label_column: str) -> _Columns:
    """Read the text and label columns of a CSV/TSV file, texts verbatim."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    header = _csv_header(path, kind, text_column, label_column)
    try:
        table = pa_csv.read_csv(
            path,
            # newlines_in_values: else pyarrow cuts the file in blocks at any line break, and a
            # quoted text that spans lines across a block's end becomes two bad rows.
            parse_options=pa_csv.ParseOptions(delimiter=_SEPARATORS[kind], newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[text_column, label_column],
                column_types={text_column: pa.string()},
                # Only "" is missing: "NA", "null", "None", ... are real texts.
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "Empty CSV file" in message:  # a header without a line break, and nothing else
            raise _header_only(path, kind, header) from exc
        if "UTF8" in message:
            raise _not_utf8(path) from exc
        raise _bad_record(path, kind, header) or DataError(
            f"cannot read {path}: {_one_line(exc)}"
        ) from exc
    except pa.ArrowException as exc:  # e.g. a header pyarrow splits unlike the csv module
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from exc
    if table.num_rows == 0:
        raise _header_only(path, kind, header)
    # A column pyarrow types itself is read as bytes when a value is not UTF-8.
    if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
        raise _not_utf8(path)
    return _columns(table, text_column, label_column)


# JSON lines


class _DuplicateKeyError(Exception):
    """A key that appears twice in one JSON object (json.loads would keep the last silently)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


def _json_object(path: Path, number: int, raw: bytes) -> dict[str, object]:
    """Line `number` of a JSON lines file as an object; DataError saying what is wrong if not."""
    try:
        line = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    try:
        obj = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        pretty = line.strip() in ("[", "{")
        hint = " (this looks like pretty-printed JSON: write one object per line)" if pretty else ""
        raise DataError(
            f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}); "
            f"each line must hold one JSON object{hint}"
        ) from exc
    except _DuplicateKeyError as exc:
        raise DataError(
            f"{path}: key {exc.args[0]!r} appears twice in the object on line {number}; rename one"
        ) from exc
    if not isinstance(obj, dict):
        what = _JSON_TYPES.get(type(obj), "null")
        hint = " (one JSON array of objects is JSON, not JSON lines)" if what == "array" else ""
        raise DataError(
            f"{path}: line {number} holds a JSON {what}, not an object; each line must hold one "
            f"JSON object{hint}"
        )
    return obj


def _jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each line that is not blank (pyarrow skips blank lines too)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def _read_jsonl(path: Path, kind: str, text_column: str, label_column: str) -> _Columns:
    """Read the text and label columns of a JSON lines file (pyarrow, else line by line)."""
    import pandas as pd
    import pyarrow as pa
    from pyarrow import json as pa_json

    _check_text_file(path, kind, text_column, label_column)
    try:
        table = pa_json.read_json(path)
    except (pa.ArrowException, UnicodeDecodeError):
        # pyarrow wants one type per column (mixed 1 and "1" need json.loads), refuses what is
        # wrong without naming the line (bad JSON, a duplicate key, an array), and fails on
        # invalid UTF-8: reading line by line reads the first and names the line of the others.
        frame = pd.DataFrame([_json_object(path, n, raw) for n, raw in _jsonl_lines(path)])
        columns = [str(c) for c in frame.columns]
        _require_columns(path, columns, text_column, label_column)
        return frame[text_column], frame[label_column]
    _require_columns(path, table.column_names, text_column, label_column)
    try:
        # pyarrow's JSON reader takes strings as they are; a text that is not UTF-8 would fail
        # later, in pandas, without a word on where (a full check of two columns costs ~2 ms).
        for name in (text_column, label_column):
            table.column(name).validate(full=True)
    except pa.ArrowInvalid:
        raise _not_utf8(path) from None
    return _columns(table, text_column, label_column)


# Parquet


def _not_parquet(path: Path, exc: Exception) -> DataError:
    """Say what a file that pyarrow cannot open as Parquet is instead."""
    head = _head(path)
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4))
        tail = f.read()
    if not head:
        return DataError(f"{path}: the file is empty (0 bytes); write it again with to_parquet")
    if tail == b"PAR1":
        return DataError(f"cannot read {path}: {_one_line(exc)}")  # Parquet, but damaged
    if head.startswith(b"PAR1"):
        return DataError(
            f"{path}: the file is cut short (it starts like Parquet but has no footer); "
            "write it again"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        is_text = b"\0" not in head
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return DataError(
            f"{path}: the file is not Parquet (it holds text); give it the suffix of its format "
            "(.csv, .tsv or .jsonl)"
        )
    return DataError(
        f"{path}: the file is not Parquet (it does not end with the marker PAR1); write it with "
        "pandas' to_parquet or pyarrow"
    )


def _read_parquet(path: Path, kind: str, text_column: str, label_column: str) -> _Columns:
    """Read the text and label columns of a Parquet file; its schema is checked first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except pa.ArrowInvalid as exc:
        raise _not_parquet(path, exc) from exc
    _refuse_duplicates(path, names, "schema")
    _require_columns(path, names, text_column, label_column)
    try:
        table = pq.read_table(path, columns=[text_column, label_column])
    except pa.ArrowException as exc:
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from exc
    return _columns(table, text_column, label_column)


# Any file


def _columns(table: pa.Table, text_column: str, label_column: str) -> _Columns:
    # Column by column: a table's pandas metadata could restore an index that is not 0..n-1,
    # and positions in the index name rows in messages.
    return table.column(text_column).to_pandas(), table.column(label_column).to_pandas()


_READERS = {"csv": _read_csv, "tsv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def _read_file(path: Path, text_column: str, label_column: str) -> _Split:
    """Read a table file by its suffix, keeping texts verbatim (no NA guessing on "null").

    Every way a file can be unfit (empty, another format or encoding, a bad line, a duplicate
    column) raises DataError naming the file and, where there is one, the line.
    """
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise DataError(f"data file {what}: {path}")
    try:
        texts, labels = _READERS[kind](path, kind, text_column, label_column)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {_one_line(exc)}") from exc
    if len(texts) == 0:
        raise DataError(f"{path}: no rows (empty split); add one row per example")
    return _Split(texts, labels, str(path), kind, path=path)


def _record_line(path: Path, kind: str, position: int) -> int | None:
    """The line where row `position` (0-based, header not counted) starts; None if unknown."""
    try:
        if kind == "jsonl":
            rows = (number for number, _ in _jsonl_lines(path))
        elif kind in _SEPARATORS:
            records = _csv_records(path, kind)
            next(records, None)  # the header
            rows = (start for start, _, _ in records)
        else:
            return None
        return next(itertools.islice(rows, position, None), None)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


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


def _reject_nested(split: _Split, role: str, column: str, values: pd.Series) -> None:
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


def _clean(split: _Split, text_column: str, label_column: str) -> tuple[list[str], pd.Series, int]:
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
