"""Reading Parquet files, and saying what a file that is not Parquet is instead."""

from __future__ import annotations

import codecs
from pathlib import Path

from sweep.data._sniff import (
    Columns,
    columns_of,
    one_line,
    read_head,
    refuse_duplicates,
    require_columns,
)
from sweep.errors import DataError


def _not_parquet(path: Path, exc: Exception) -> DataError:
    """Say what a file that pyarrow cannot open as Parquet is instead."""
    head = read_head(path)
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4))
        tail = f.read()
    if not head:
        return DataError(f"{path}: the file is empty (0 bytes); write it again with to_parquet")
    if tail == b"PAR1":
        return DataError(f"cannot read {path}: {one_line(exc)}")  # Parquet, but damaged
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


def read_parquet(path: Path, kind: str, text_column: str, label_column: str) -> Columns:
    """Read the text and label columns of a Parquet file; its schema is checked first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except pa.ArrowInvalid as exc:
        raise _not_parquet(path, exc) from exc
    refuse_duplicates(path, names, "schema")
    require_columns(path, names, text_column, label_column)
    try:
        table = pq.read_table(path, columns=[text_column, label_column])
    except pa.ArrowException as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}") from exc
    return columns_of(table, text_column, label_column)
