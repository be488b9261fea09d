"""`sweep report` and `sweep dashboard`.

Neither imports torch: the report is built from what the trials recorded, the dashboard is
optuna-dashboard's (read-only unless --allow-writes, see sweep.report.dashboard).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sweep.cli._common import StorageOption, pick_study, read_storage, user_errors
from sweep.errors import ConfigError
from sweep.storage import close_storage, resolve_storage_url

__all__ = ["register"]


@user_errors
def report(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The HTML file to write (one self-contained page, opens offline).",
            metavar="FILE",
            show_default=False,
        ),
    ],
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Study names (default: the only study in the storage). With several, "
            "their best-so-far curves are overlaid and their best trials compared.",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    storage: StorageOption = None,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            metavar="SECONDS",
            help="Rewrite the file every SECONDS seconds until Ctrl-C, for a sweep that is "
            "running (the open page reloads itself).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write an HTML report of one or more studies: header, figures and a trials table.

    Figures: optimization history with the best-so-far line, learning curves, parallel
    coordinates, parameter importances, the metric against learning rate per model size,
    the metric against cost with its Pareto front, a timeline of trials per worker. One
    file with plotly.js inside: it opens from disk with no network.
    """
    from sweep.report import check_output, report_html, write_report

    if watch is not None and not watch > 0:
        raise ConfigError(f"--watch must be a positive number of seconds, got {watch}")
    check_output(output)
    url = resolve_storage_url(storage)
    wanted: list[str | None] = list(dict.fromkeys(names)) if names else [None]
    opened = read_storage(storage)
    try:
        while True:
            studies = [pick_study(opened, name, url) for name in wanted]
            size = write_report(output, report_html(studies, refresh_seconds=watch))
            trials = sum(len(s.get_trials(deepcopy=False)) for s in studies)
            typer.echo(
                f"wrote {output}: {', '.join(s.study_name for s in studies)}, "
                f"{trials} trials, {size / 1e6:.1f} MB",
                err=watch is not None,
            )
            if watch is None:
                return
            time.sleep(watch)
    except KeyboardInterrupt:
        # Ctrl-C is how --watch ends: the last complete file stays.
        typer.echo(f"stopped watching; {output} is as of the last rewrite", err=True)
    finally:
        close_storage(opened)


@user_errors
def dashboard(
    storage: StorageOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. Only the loopback (127.0.0.1, ::1, localhost) "
            "unless --allow-remote is given.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on (0: any free port).")
    ] = 8080,
    allow_writes: Annotated[
        bool,
        typer.Option(
            "--allow-writes",
            help="Serve optuna-dashboard's whole API: notes, trial states, deleting and "
            "creating studies. Without it the dashboard is read-only (other methods than "
            "GET and HEAD get 405).",
        ),
    ] = False,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a --host off the loopback (0.0.0.0, a LAN address). The dashboard "
            "has no authentication: anyone who reaches it can read the studies.",
        ),
    ] = False,
) -> None:
    """Serve optuna-dashboard on the study storage until Ctrl-C.

    Read-only and on this machine only by default. Running workers keep writing to the
    same storage (SQLite in WAL mode, so the dashboard's reads never lock them out).
    """
    from sweep.report.dashboard import Dashboard

    server = Dashboard(
        resolve_storage_url(storage),
        host,
        port,
        allow_writes=allow_writes,
        allow_remote=allow_remote,
    )
    try:
        warning = server.remote_warning()
        if warning is not None:
            typer.echo(warning, err=True)
        typer.echo(f"{server.describe()} (Ctrl-C to stop)")
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("dashboard stopped", err=True)
    finally:
        server.close()


def register(app: typer.Typer) -> None:
    """Add `report` and `dashboard` to `app`."""
    for command in (report, dashboard):
        app.command()(command)
