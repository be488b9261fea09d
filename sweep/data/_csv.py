"""Reading CSV and TSV files: the header with quotes respected, the rows with pyarrow, and a
parse error explained with the line it happened on."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from sweep.data._sniff import (
    SEPARATOR_NAMES,
    SEPARATORS,
    Columns,
    check_text_file,
    columns_of,
    not_utf8,
    one_line,
    refuse_duplicates,
    require_columns,
)
from sweep.errors import DataError


def csv_records(path: Path, kind: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each record, header first, skipping empty lines.

    The csv module's reading agrees with pyarrow's on quotes and line breaks but counts lines,
    so it finds what pyarrow cannot place (a bad row, the line of a row).
    """
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=SEPARATORS[kind])
        start = 1
        for fields in reader:
            if fields:  # pyarrow skips empty lines too
                yield start, reader.line_num, fields
            start = reader.line_num + 1


def _csv_header(path: Path, kind: str, text_column: str, label_column: str) -> list[str]:
    """The header's column names, parsed with quotes respected; DataError if the file is unfit."""
    check_text_file(path, kind, text_column, label_column)
    try:
        first = next(csv_records(path, kind), None)
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except csv.Error as exc:
        raise DataError(f"{path}: cannot parse the header line: {exc}") from exc
    header = [] if first is None else first[2]
    if len(header) == 1:  # a table needs two columns: is another separator in use?
        _refuse_other_separator(path, kind, header[0])
    refuse_duplicates(path, header, "header")
    require_columns(path, header, text_column, label_column)
    return header


def _refuse_other_separator(path: Path, kind: str, header: str) -> None:
    """Say which separator a one-column header uses instead of the suffix's, if it holds one."""
    mine = SEPARATOR_NAMES[kind][1]
    other = "tsv" if kind == "csv" else "csv"
    if SEPARATORS[other] in header:
        name, names = SEPARATOR_NAMES[other]
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
        f"{SEPARATORS[kind].join(header)!r}; add one row per example under it"
    )


def _bad_record(path: Path, kind: str, header: list[str]) -> DataError | None:
    """The error naming the first row whose fields do not match the header (pyarrow's names none).

    None when the csv module finds no such row; the caller then passes on pyarrow's message.
    """
    records = csv_records(path, kind)
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
    (one, mine), theirs = SEPARATOR_NAMES[kind], SEPARATOR_NAMES[other][1]
    if len(fields) > len(header):
        fix = f"quote a text that holds a {one}"
    elif any(SEPARATORS[other] in field for field in fields):
        fix = f"separate its values with {mine}, not {theirs}"
    else:
        fix = "give each row a value for every column"
    shown = ", ".join(header[:8]) + (", …" if len(header) > 8 else "")
    count = f"{len(fields)} field" + ("s" if len(fields) != 1 else "")
    return DataError(
        f"{path}: {where} has {count} but the header has {len(header)} ({shown}); {fix}"
    )


def read_csv(path: Path, kind: str, text_column: str, label_column: str) -> Columns:
    """Read the text and label columns of a CSV/TSV file, texts verbatim."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    header = _csv_header(path, kind, text_column, label_column)
    try:
        table = pa_csv.read_csv(
            path,
            # newlines_in_values: else pyarrow cuts the file in blocks at any line break, and a
            # quoted text that spans lines across a block's end becomes two bad rows.
            parse_options=pa_csv.ParseOptions(delimiter=SEPARATORS[kind], newlines_in_values=True),
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
            raise not_utf8(path) from exc
        raise _bad_record(path, kind, header) or DataError(
            f"cannot read {path}: {one_line(exc)}"
        ) from exc
    except pa.ArrowException as exc:  # e.g. a header pyarrow splits unlike the csv module
        raise DataError(f"cannot read {path}: {one_line(exc)}") from exc
    if table.num_rows == 0:
        raise _header_only(path, kind, header)
    # A column pyarrow types itself is read as bytes when a value is not UTF-8.
    if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
        raise not_utf8(path)
    return columns_of(table, text_column, label_column)
