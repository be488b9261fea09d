"""One split of a dataset as read from a file (or a Hugging Face dataset), before cleaning."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.data._csv import csv_records, read_csv
from sweep.data._jsonl import jsonl_lines, read_jsonl
from sweep.data._parquet import read_parquet
from sweep.data._sniff import SEPARATORS, one_line
from sweep.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


@dataclass
class Split:
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
        found = None if self.path is None else record_line(self.path, self.kind, position)
        return found if found is not None else position + (2 if self.kind in SEPARATORS else 1)


_READERS = {"csv": read_csv, "tsv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


def read_file(path: Path, text_column: str, label_column: str) -> Split:
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
        raise DataError(f"cannot read {path}: {one_line(exc)}") from exc
    if len(texts) == 0:
        raise DataError(f"{path}: no rows (empty split); add one row per example")
    return Split(texts, labels, str(path), kind, path=path)


def record_line(path: Path, kind: str, position: int) -> int | None:
    """The line where row `position` (0-based, header not counted) starts; None if unknown."""
    try:
        if kind == "jsonl":
            rows = (number for number, _ in jsonl_lines(path))
        elif kind in SEPARATORS:
            records = csv_records(path, kind)
            next(records, None)  # the header
            rows = (start for start, _, _ in records)
        else:
            return None
        return next(itertools.islice(rows, position, None), None)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
