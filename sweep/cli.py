"""The `sweep` command: parse arguments, load the study, call the library.

Commands here: status, studies, best. run and worker are in sweep/cli_run.py, report and dashboard
in sweep/cli_report.py, launch in sweep/cli_launch.py; what they share in sweep/_cli_common.py.
A user's mistake (a SweepError) prints one line `error: ...` on stderr and exits with code 2;
anything else is our bug and keeps its traceback.

`status`, `studies` and `best` without --export must stay light: torch, transformers and the
training code are imported inside the commands that need them, never at module level.
"""

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from optuna.trial import TrialState

from sweep import __version__
from sweep._cli_common import (
    ArtifactsOption,
    StorageOption,
    StudyNameArgument,
    _consoles,
    _one_line,
    _pick_study,
    _read_storage,
    _setup_logging,
    _user_errors,
)
from sweep.cli_confirm import register as register_confirm
from sweep.cli_launch import register as register_launch
from sweep.cli_report import register as register_report
from sweep.cli_run import register as register_run
from sweep.errors import ConfigError, StorageError, SweepError
from sweep.status import (
    ATTR_METRIC,
    best_line,
    best_trial,
    fmt_number,
    trial_cost,
    trial_row,
)
from sweep.storage import (
    close_storage,
    default_artifacts_dir,
    redact,
    resolve_storage_url,
)

app = typer.Typer(
    name="sweep",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    # Our bugs get a plain traceback; users' mistakes never reach this (see _user_errors).
    pretty_exceptions_enable=False,
)

logger = logging.getLogger("sweep")


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


register_run(app)  # first in --help: run, worker


# -- sweep status / studies / best ------------------------------------------------------------


@app.command()
@_user_errors
def status(
    name: StudyNameArgument = None,
    storage: StorageOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show a study's trials, its best trial, counts by state and the sweep overhead.

    One row per trial: number, state, parameters, value, best epoch / epochs run, seconds and
    why it ended (complete, pruned at epoch k, nan-loss, error: message, interrupted). A study
    whose metric lists cost also shows each trial's cost and marks its Pareto front.
    """
    from sweep.status import render_status, study_status

    url = resolve_storage_url(storage)
    opened = _read_storage(storage)
    try:
        data = study_status(_pick_study(opened, name, url))
    finally:
        close_storage(opened)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    out, _ = _consoles()
    render_status(data, out)


@app.command()
@_user_errors
def studies(
    storage: StorageOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the studies in the storage: name, trials, best value, direction."""
    from rich.table import Table
    from rich.text import Text

    from sweep.status import studies_rows

    opened = _read_storage(storage)
    try:
        rows = studies_rows(opened)
    finally:
        close_storage(opened)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    out, _ = _consoles()
    if not rows:
        out.print(f"no studies in {redact(resolve_storage_url(storage))}", markup=False)
        return
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
    out.print(table)


@app.command()
@_user_errors
def best(
    name: StudyNameArgument = None,
    storage: StorageOption = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write the best model here: save_pretrained model + tokenizer, labels.json, "
            "manifest.json.",
            show_default=False,
        ),
    ] = None,
    artifacts_dir: ArtifactsOption = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            help="Only trials whose cost (training seconds x GPUs; a CPU trial counts as one) "
            "is at most this many seconds.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the best trial of a study; with --export, write its fine-tuned model.

    The best trial has the best metric; with --budget, the best of those whose cost fits (of
    equals, the cheapest). In a study whose metric lists cost (two objectives) it is the
    trial of the Pareto front with the best metric (with --budget: of the trials that fit).

    The export copies the model kept during the sweep (keep_best in the study file); if it was
    not kept, the trial is retrained from its recorded parameters and seed, and the export says
    so.
    """

    if budget is not None and not budget > 0:
        raise ConfigError(f"--budget must be a positive number of seconds, got {budget}")
    url = resolve_storage_url(storage)
    artifacts = artifacts_dir if artifacts_dir is not None else default_artifacts_dir(url)
    opened = _read_storage(storage)
    try:
        study_obj = _pick_study(opened, name, url)
        trial = best_trial(study_obj, budget)
        if trial is None and budget is not None and best_trial(study_obj) is not None:
            costs = [
                c
                for t in study_obj.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if (c := trial_cost(t)) is not None
            ]
            cheapest = f"; the cheapest costs {fmt_number(min(costs))} s" if costs else ""
            raise StorageError(
                f"no complete trial of study {study_obj.study_name!r} costs at most "
                f"{fmt_number(budget)} s{cheapest}"
            )
        if trial is None:
            raise StorageError(f"study {study_obj.study_name!r} has no complete trial yet")
        metric = study_obj.user_attrs.get(ATTR_METRIC) or "value"
        row = trial_row(trial)
        cost = trial_cost(trial)
        if as_json:
            typer.echo(
                json.dumps(
                    {**row, "cost": cost, "user_attrs": trial.user_attrs}, indent=2, default=str
                )
            )
        else:
            out, err = _consoles()
            out.print(best_line(row, metric), markup=False)
            if budget is not None and len(trial.values) > 1:
                out.print(f"  budget: {fmt_number(budget)} s", markup=False)
            elif budget is not None:
                out.print(
                    f"  cost: {fmt_number(cost)} s (budget {fmt_number(budget)} s)", markup=False
                )
            for key in (
                "best_epoch",
                "epochs_run",
                "val_loss",
                "val_accuracy",
                "train_seconds",
                "samples_per_s",
                "peak_memory_mb",
                "device",
                "n_params",
                "seed",
            ):
                if key in trial.user_attrs:
                    out.print(f"  {key}: {fmt_number(trial.user_attrs[key])}", markup=False)
        if export is not None:
            from sweep.export import export_trial

            out, err = _consoles()
            _setup_logging(err)
            manifest = export_trial(
                study_obj,
                trial,
                export,
                artifacts_dir=artifacts,
                log=lambda text: err.print(text, markup=False),
            )
            how = (
                "copied the kept model"
                if manifest["source"] == "kept"
                else ("its model was not kept: retrained it from the recorded parameters and seed")
            )
            err.print(f"exported trial {trial.number} to {export} ({how})", markup=False)
    finally:
        close_storage(opened)


# Commands that live in modules of their own.
register_confirm(app)
register_report(app)
register_launch(app)


def main() -> None:
    """Console-script entry point (`sweep`)."""
    try:
        app()
    except SweepError as e:  # raised outside a command (should not happen; belt and braces)
        typer.echo(f"error: {_one_line(e)}", err=True)
        raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
    main()
