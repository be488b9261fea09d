"""`sweep status`, `sweep studies` and `sweep best`: what a storage's studies hold.

These stay light: torch, transformers and the training code are imported only by `best --export`
(which may have to retrain), never at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sweep.cli._common import (
    ArtifactsOption,
    StorageOption,
    StudyNameArgument,
    consoles,
    pick_study,
    read_storage,
    setup_logging,
    user_errors,
)
from sweep.errors import ConfigError, StorageError
from sweep.storage import close_storage, default_artifacts_dir, redact, resolve_storage_url
from sweep.study import StudyKey, TrialKey, best_trial, trial_cost, trial_row
from sweep.study.text import best_line, fmt_number

__all__ = ["register"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
# What `sweep best` shows of the best trial, after its line.
_BEST_ATTRS = (
    TrialKey.BEST_EPOCH,
    TrialKey.EPOCHS_RUN,
    TrialKey.VAL_LOSS,
    TrialKey.VAL_ACCURACY,
    TrialKey.TRAIN_SECONDS,
    TrialKey.SAMPLES_PER_S,
    TrialKey.PEAK_MEMORY_MB,
    TrialKey.DEVICE,
    TrialKey.N_PARAMS,
    TrialKey.SEED,
)


@user_errors
def status(
    name: StudyNameArgument = None, storage: StorageOption = None, as_json: JsonOption = False
) -> None:
    """Show a study's trials, its best trial, counts by state and the sweep overhead.

    One row per trial: number, state, parameters, value, best epoch / epochs run, seconds and
    why it ended (complete, pruned at epoch k, nan-loss, error: message, interrupted). A study
    whose metric lists cost also shows each trial's cost and marks its Pareto front.
    """
    from sweep.cli._render import render_status
    from sweep.study import study_status

    url = resolve_storage_url(storage)
    opened = read_storage(storage)
    try:
        data = study_status(pick_study(opened, name, url))
    finally:
        close_storage(opened)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    out, _ = consoles()
    render_status(data, out)


@user_errors
def studies(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """List the studies in the storage: name, trials, best value, direction."""
    from sweep.cli._render import render_studies
    from sweep.study import studies_rows

    opened = read_storage(storage)
    try:
        rows = studies_rows(opened)
    finally:
        close_storage(opened)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    out, _ = consoles()
    if not rows:
        out.print(f"no studies in {redact(resolve_storage_url(storage))}", markup=False)
        return
    render_studies(rows, out)


@user_errors
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
    as_json: JsonOption = False,
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
    opened = read_storage(storage)
    try:
        study = pick_study(opened, name, url)
        trial = _best_within(study, budget)
        if as_json:
            row = {**trial_row(trial), "cost": trial_cost(trial), "user_attrs": trial.user_attrs}
            typer.echo(json.dumps(row, indent=2, default=str))
        else:
            _print_best(study, trial, budget)
        if export is not None:
            _export(study, trial, export, artifacts)
    finally:
        close_storage(opened)


def _best_within(study: Any, budget: float | None) -> Any:
    """The best trial (that fits `budget`); StorageError saying why there is none."""
    from optuna.trial import TrialState

    trial = best_trial(study, budget)
    if trial is None and budget is not None and best_trial(study) is not None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        costs = [c for t in complete if (c := trial_cost(t)) is not None]
        cheapest = f"; the cheapest costs {fmt_number(min(costs))} s" if costs else ""
        raise StorageError(
            f"no complete trial of study {study.study_name!r} costs at most "
            f"{fmt_number(budget)} s{cheapest}"
        )
    if trial is None:
        raise StorageError(f"study {study.study_name!r} has no complete trial yet")
    return trial


def _print_best(study: Any, trial: Any, budget: float | None) -> None:
    out, _ = consoles()
    metric = study.user_attrs.get(StudyKey.METRIC) or "value"
    out.print(best_line(trial_row(trial), metric), markup=False)
    if budget is not None and len(trial.values) > 1:
        out.print(f"  budget: {fmt_number(budget)} s", markup=False)
    elif budget is not None:
        cost = fmt_number(trial_cost(trial))
        out.print(f"  cost: {cost} s (budget {fmt_number(budget)} s)", markup=False)
    for key in _BEST_ATTRS:
        if key in trial.user_attrs:
            out.print(f"  {key}: {fmt_number(trial.user_attrs[key])}", markup=False)


def _export(study: Any, trial: Any, dest: Path, artifacts: Path) -> None:
    from sweep.export import export_trial

    _, err = consoles()
    setup_logging(err)
    manifest = export_trial(
        study, trial, dest, artifacts_dir=artifacts, log=lambda text: err.print(text, markup=False)
    )
    how = (
        "copied the kept model"
        if manifest["source"] == "kept"
        else "its model was not kept: retrained it from the recorded parameters and seed"
    )
    err.print(f"exported trial {trial.number} to {dest} ({how})", markup=False)


def register(app: typer.Typer) -> None:
    """Add `status`, `studies` and `best` to `app`."""
    for command in (status, studies, best):
        app.command()(command)
