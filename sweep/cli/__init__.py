"""The `sweep` command: parse arguments, load the study, call the library. The only package that
imports typer or rich, or prints.

Every command module registers its commands the same way, with `register(app)`; a module imports
only light code at its top, so `sweep --help`, `status` and `report` never import torch. A user's
mistake (a SweepError) prints one line `error: ...` on stderr and exits with its code (2 for the
input, 3 for the infrastructure: sweep.errors.ExitCode); anything else is our bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from sweep import __version__
from sweep.cli._common import one_line
from sweep.errors import SweepError

__all__ = ["app", "main"]

app = typer.Typer(
    name="sweep",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    # Our bugs get a plain traceback; users' mistakes never reach this (see user_errors).
    pretty_exceptions_enable=False,
)

# The command modules, in the order of `sweep --help`.
COMMAND_MODULES = ("run", "study", "confirm", "report", "launch")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sweep {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Hyperparameter sweeps for fine-tuning transformer text classifiers.

    A study file names the data, a ladder of model sizes and a search space; every trial is a
    full fine-tune whose validation metric after each epoch goes to a SQL database (SQLite by
    default, PostgreSQL to share a study between machines).
    """


for _module in COMMAND_MODULES:
    importlib.import_module(f"sweep.cli.{_module}").register(app)


def main() -> None:
    """Console-script entry point (`sweep`)."""
    try:
        app()
    except SweepError as e:  # raised outside a command (should not happen; belt and braces)
        typer.echo(f"error: {one_line(e)}", err=True)
        raise SystemExit(e.exit_code) from None
