"""`sweep report`: one self-contained HTML page of a study's figures, built from its storage.

Computed first, drawn second: `rows.collect` reads a study into plain rows, `figures` draws
them with Plotly and `page` lays them out with plotly.js embedded once. Needs Optuna, Plotly
and scikit-learn; never torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna

from sweep.errors import ConfigError
from sweep.report.page import render_page
from sweep.report.rows import StudyRows, collect, compare

__all__ = [
    "StudyRows",
    "check_output",
    "collect",
    "compare",
    "render_page",
    "report_html",
    "write_report",
]


def report_html(studies: Sequence[optuna.Study], *, refresh_seconds: float | None = None) -> str:
    """The report of one or more studies as an HTML string."""
    return render_page([collect(s) for s in studies], refresh_seconds=refresh_seconds)


def check_output(path: Path) -> None:
    """Fail before any work if the report cannot be written at `path` (ConfigError)."""
    if path.is_dir():
        raise ConfigError(f"cannot write the report to {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write the report to {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write the report to {path}: directory {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write the report to {path}: the file is not writable")


def write_report(path: Path, text: str) -> int:
    """Write the page atomically (a browser reloading it never sees half a file); returns bytes.

    Raises ConfigError if the file cannot be written.
    """
    data = text.encode("utf-8")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # mkstemp makes the file private (0600); a report is a normal file.
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ConfigError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return len(data)
