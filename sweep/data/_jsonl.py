"""Reading JSON lines files: pyarrow first, and line by line (naming the line) when it fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sweep.data._sniff import (
    JSON_TYPES,
    Columns,
    check_text_file,
    columns_of,
    not_utf8,
    require_columns,
)
from sweep.errors import DataError


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
        raise not_utf8(path) from None
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
        what = JSON_TYPES.get(type(obj), "null")
        hint = " (one JSON array of objects is JSON, not JSON lines)" if what == "array" else ""
        raise DataError(
            f"{path}: line {number} holds a JSON {what}, not an object; each line must hold one "
            f"JSON object{hint}"
        )
    return obj


def jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each line that is not blank (pyarrow skips blank lines too)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def read_jsonl(path: Path, kind: str, text_column: str, label_column: str) -> Columns:
    """Read the text and label columns of a JSON lines file (pyarrow, else line by line)."""
    import pandas as pd
    import pyarrow as pa
    from pyarrow import json as pa_json

    check_text_file(path, kind, text_column, label_column)
    try:
        table = pa_json.read_json(path)
    except (pa.ArrowException, UnicodeDecodeError):
        # pyarrow wants one type per column (mixed 1 and "1" need json.loads), refuses what is
        # wrong without naming the line (bad JSON, a duplicate key, an array), and fails on
        # invalid UTF-8: reading line by line reads the first and names the line of the others.
        frame = pd.DataFrame([_json_object(path, n, raw) for n, raw in jsonl_lines(path)])
        columns = [str(c) for c in frame.columns]
        require_columns(path, columns, text_column, label_column)
        return frame[text_column], frame[label_column]
    require_columns(path, table.column_names, text_column, label_column)
    try:
        # pyarrow's JSON reader takes strings as they are; a text that is not UTF-8 would fail
        # later, in pandas, without a word on where (a full check of two columns costs ~2 ms).
        for name in (text_column, label_column):
            table.column(name).validate(full=True)
    except pa.ArrowInvalid:
        raise not_utf8(path) from None
    return columns_of(table, text_column, label_column)
