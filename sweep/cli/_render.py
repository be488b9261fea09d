"""Drawing rows with Rich: the status table, the list of studies, the verdict of confirm.

Every value that comes from a database or a study file is drawn as Text, never as markup: a name
or an error holding "[/x]" is shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sweep.study import TrialKey
from sweep.study.text import (
    best_line,
    dropped_text,
    fmt_epochs,
    fmt_number,
    fmt_params,
    fmt_worker,
    overhead_line,
    pareto_line,
)

__all__ = ["render_confirm", "render_status", "render_studies"]


def render_status(status: Mapping[str, Any], console: Any) -> None:
    """Draw the status rows on a Rich console: trials table, best trial, counts, overhead.

    A multi-objective study gets a column per objective, a `pareto` column marking the trials
    on the Pareto front, and a line listing them.
    """
    from rich.table import Table
    from rich.text import Text

    metric = status.get("metric") or "value"
    objectives = status.get("objectives") or [metric]
    directions = status.get("directions") or [status["direction"]]
    multi = status.get("pareto_front") is not None
    what = "; ".join(f"{n}, {d}" for n, d in zip(objectives, directions, strict=False))
    # Every value from the database is Text, never markup: a study name or an error message
    # holding "[/x]" or "[bold]" is shown as it is.
    table = Table(title=Text(f"study {status['study']} ({what})"))
    headers = [("#", "right"), ("state", "left"), ("parameters", "left"), (metric, "right")]
    if multi:
        headers += [(name, "right") for name in objectives[1:]] + [("pareto", "center")]
    headers += [
        ("epochs best/run", "right"),
        ("seconds", "right"),
        ("worker", "left"),
        ("end", "left"),
    ]
    for header, justify in headers:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    best_number = status["best"]["number"] if status["best"] else None
    for row in status["trials"]:
        style = "bold green" if row["number"] == best_number else None
        if row.get("worker_lost"):
            style = "red"
        cells = _status_cells(row, len(objectives) if multi else 1)
        table.add_row(*(Text(cell) for cell in cells), style=style)
    console.print(table)
    console.print(best_line(status["best"], metric), markup=False)
    if multi:
        console.print(pareto_line(status["pareto_front"]), markup=False)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in status["counts"].items() if n)
    console.print(f"trials: {counts or 'none'}", markup=False)
    if status.get("data_dropped_empty"):
        console.print(f"data: {dropped_text(status['data_dropped_empty'])}", markup=False)
    console.print(overhead_line(status["overhead"]), markup=False)


def _status_cells(row: Mapping[str, Any], objectives: int) -> list[str]:
    """One trial's cells of the status table; `objectives` > 1 adds the other objectives'
    values and the Pareto mark."""
    end = row[TrialKey.END_REASON]
    if row.get("retry_of") is not None:
        end = f"{end} (retry of #{row['retry_of']})"
    cells = [str(row["number"]), row["state"], fmt_params(row["params"]), fmt_number(row["value"])]
    if objectives > 1:
        values = row.get("values") or []
        cells += [fmt_number(values[i] if i < len(values) else None) for i in range(1, objectives)]
        cells.append("*" if row.get("pareto") else "")
    return [*cells, fmt_epochs(row), fmt_number(row["seconds"]), fmt_worker(row), end]


def render_studies(rows: Sequence[Mapping[str, Any]], console: Any) -> None:
    """One line per study: name, trials, complete trials, best value, metric, direction."""
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for header in ("study", "trials", "complete", "best", "metric", "direction"):
        table.add_column(
            header, justify="right" if header in ("trials", "complete", "best") else "left"
        )
    for row in rows:
        cells = [
            row["name"],
            str(row["trials"]),
            str(row["complete"]),
            fmt_number(row["best_value"]),
            str(row["metric"] or "-"),
            # A study with cost as a second objective: "minimize, + cost".
            ", ".join([row["direction"], *(f"+ {o}" for o in row["objectives"][1:])]),
        ]
        table.add_row(*(Text(cell) for cell in cells))  # Text: names are not markup
    console.print(table)


def render_confirm(summary: dict[str, Any], console: Any) -> None:
    """Draw the rows of `sweep.confirm.summarize`: a table row per configuration, the
    verdict."""
    from rich.table import Table
    from rich.text import Text

    metric = summary["metric"]
    table = Table(
        title=Text(
            f"confirm {summary['study']}: {metric} ({summary['direction']}), "
            f"{summary['seeds']} new seed(s) per configuration"
        )
    )
    for header, justify in (
        ("#", "right"),
        ("trial", "right"),
        ("parameters", "left"),
        ("runs", "right"),
        (f"{metric} mean ± std", "right"),
        ("original", "right"),
        ("new seeds", "left"),
        ("p vs #1", "right"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in summary["configurations"]:
        original = [r for r in row["runs"] if r["source"] == "original"]
        new = [r for r in row["runs"] if r["source"] != "original"]
        new_text = " ".join(
            fmt_number(r["value"]) if r["value"] is not None else r["state"].lower() for r in new
        )
        if row["missing"]:
            new_text += f" ({row['missing']} missing)"
        p = row["p_vs_winner"]
        table.add_row(
            str(row["rank"]),
            str(row["trial"]),
            Text(fmt_params(row["params"])),
            str(row["n"]),
            f"{fmt_number(row['mean'])} ± {fmt_number(row['std'])}",
            " ".join(fmt_number(r["value"]) for r in original),
            Text(new_text.strip() or "-"),
            "-" if p is None else f"{p:.3g}",
            style="bold green" if row["rank"] == 1 else None,
        )
    console.print(table)
    console.print(f"verdict: {summary['verdict_text']}", markup=False)
    if summary["sweep_best"] != summary["winner"]:
        rank = next(
            r["rank"] for r in summary["configurations"] if r["trial"] == summary["sweep_best"]
        )
        console.print(
            f"the sweep's best, trial {summary['sweep_best']}, ranks {rank} once noise is counted",
            markup=False,
        )
    console.print(
        f"runs: {summary['new_runs']} new, {summary['reused_runs']} reused, in study "
        f"{summary['confirm_study']}",
        markup=False,
    )
