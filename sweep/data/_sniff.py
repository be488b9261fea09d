"""Cheap checks of a data file before a parser gets it, and the messages shared by the readers.

A file that is empty, binary, of another format or encoding, or that repeats a column name is
refused here with one line saying what is wrong and what to do.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Columns = tuple["pd.Series", "pd.Series"]  # texts, labels, indexed 0..n-1 in file order
HEAD_BYTES = 1 << 16  # how much of a file the cheap checks before a parse look at
SEPARATORS = {"csv": ",", "tsv": "\t"}
SEPARATOR_NAMES = {"csv": ("comma", "commas"), "tsv": ("tab", "tabs")}
FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON lines", "parquet": "Parquet"}
# Other formats under a table's suffix, told by their first bytes: (magic, what it is, suffix).
MAGIC = (
    (b"PAR1", "Parquet", ".parquet"),
    (b"\x1f\x8b", "gzip-compressed", None),
    (b"PK\x03\x04", "a zip archive (an Excel workbook?)", None),
)
BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
JSON_TYPES = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line, at most 300 characters of the message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def read_head(path: Path) -> bytes:
    """The first HEAD_BYTES of the file, for the checks before a parse."""
    with path.open("rb") as f:
        return f.read(HEAD_BYTES)


def check_text_file(path: Path, kind: str, text_column: str, label_column: str) -> None:
    """Refuse, before a parser gets it, a file that is empty, binary, or not UTF-8 by its BOM."""
    head = read_head(path)
    name = FORMAT_NAMES[kind]
    if not head.removeprefix(codecs.BOM_UTF8).strip() and path.stat().st_size <= len(head):
        if kind == "jsonl":
            example = json.dumps({text_column: "...", label_column: "..."})
            layout = f"one object per line, like {example}"
        else:
            columns = f"{text_column}{SEPARATORS[kind]}{label_column}".replace("\t", "<tab>")
            layout = f"a header line naming the columns ({columns}) and one row per example"
        raise DataError(f"{path}: the file is empty; a {name} file needs {layout}")
    for magic, what, suffix in MAGIC:
        if head.startswith(magic):
            fix = f"rename it {path.stem}{suffix}" if suffix else f"save it as {name} text"
            raise DataError(f"{path}: the file is {what}, not {name}; {fix}")
    for bom, encoding in BOMS:
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


def not_utf8(path: Path) -> DataError:
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


def refuse_duplicates(path: Path, names: Sequence[str], where: str) -> None:
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


def require_columns(
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


def columns_of(table: pa.Table, text_column: str, label_column: str) -> Columns:
    """The text and label columns of a pyarrow table, as pandas Series indexed 0..n-1."""
    # Column by column: a table's pandas metadata could restore an index that is not 0..n-1,
    # and positions in the index name rows in messages.
    return table.column(text_column).to_pandas(), table.column(label_column).to_pandas()
