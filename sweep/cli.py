"""The `sweep` command: parse arguments, load the study, call the library.

Commands: run, status, studies, best. A user's mistake (a SweepError) prints one line
`error: ...` on stderr and exits with code 2; anything else is our bug and keeps its traceback.

`status`, `studies` and `best` without --export must stay light: torch, transformers and the
training code are imported inside the commands that need them, never at module level.
"""

import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sweep import __version__
from sweep._run_display import RunDisplay, best_value, print_summary
from sweep.cli_launch import register as register_launch
from sweep.cli_report import register as register_report
from sweep.errors import ConfigError, StorageError, SweepError
from sweep.status import (
    ATTR_CONFIG,
    ATTR_DATA_HASH,
    ATTR_DATA_SOURCE,
    ATTR_METRIC,
    ATTR_SIGNATURE,
    ATTR_SWEEP_VERSION,
    best_line,
    best_trial,
    fmt_number,
    trial_row,
)
from sweep.storage import (
    check_storage,
    close_storage,
    default_artifacts_dir,
    open_storage,
    open_study,
    redact,
    resolve_storage_url,
    study_names,
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

F = TypeVar("F", bound=Callable[..., Any])

StudyNameArgument = Annotated[
    str | None,
    typer.Argument(help="Study name (default: the only study in the storage).", show_default=False),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Database URL (default: $SWEEP_STORAGE, then the study file's storage:, "
        "then sqlite:///sweep.db).",
        show_default=False,
    ),
]
ArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-dir",
        help="Where kept models go (default: sweep-artifacts/ next to the SQLite file, "
        "else ./sweep-artifacts).",
        show_default=False,
    ),
]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _user_errors(command: F) -> F:
    """Turn a SweepError into `error: <message>` on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SweepError as e:
            typer.echo(f"error: {_one_line(e)}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _consoles() -> tuple[Any, Any]:
    """(stdout, stderr) Rich consoles, made per command so that test runners' streams are used."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # Piped output: Rich would assume 80 columns and fold the tables; a log or `less` is wider.
        out = Console(highlight=False, soft_wrap=True, width=200)
    # soft_wrap: a trial line stays one line whatever the width.
    return out, Console(stderr=True, highlight=False, soft_wrap=True)


def _setup_logging(err_console: Any) -> None:
    import optuna
    from rich.logging import RichHandler

    # Optuna's own per-trial log lines duplicate ours, and its warning for an interrupted trial
    # carries a traceback: keep only its errors.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # transformers draws a progress bar for every save_pretrained (each improving epoch) and
    # from_pretrained: noise between our trial lines.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not logger.handlers:
        handler = RichHandler(console=err_console, show_time=False, show_path=False)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


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


# -- sweep run --------------------------------------------------------------------------------


@app.command()
@_user_errors
def run(
    study: Annotated[
        Path | None,
        typer.Argument(
            help="Study file (YAML). Default: the bundled demo study (synthetic data).",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            "-n",
            help="Run until the study has this many finished trials (default: the file's trials:).",
            show_default=False,
        ),
    ] = None,
    storage: StorageOption = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Study name (default: the file's name:).", show_default=False),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Start no new trial after this many seconds (a running trial finishes).",
            show_default=False,
        ),
    ] = None,
    artifacts_dir: ArtifactsOption = None,
) -> None:
    """Create a study, or continue it, and run trials until it has --trials finished ones.

    Finished means COMPLETE, PRUNED, or FAILed because of its parameters (nan-loss, an error in
    the fine-tune); trials interrupted by Ctrl-C do not count. Continuing a study with the same
    name and storage keeps its trials (the sampler learns from them) and refuses a changed
    search space. Ctrl-C stops cleanly: the running trial is marked failed (interrupted) and a
    summary is printed.
    """
    out, err = _consoles()
    _setup_logging(err)
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")

    # Everything that can be wrong with the input is checked before the first write: the study
    # file, the storage URL, the data. A failed run leaves the storage as it was (and does not
    # create a SQLite file that was not there).
    from sweep.config import bundled_demo_path, load_study

    path = study if study is not None else bundled_demo_path()
    config = load_study(path)
    if name is not None:
        if not name.strip() or "\n" in name:
            raise ConfigError(f"--name must be a non-empty single line, got {name!r}")
        config = config.model_copy(update={"name": name})
    n_trials = trials if trials is not None else config.trials
    url = resolve_storage_url(storage, config.storage)
    check_storage(url)  # before the data: an unreachable database is reported in seconds
    artifacts = artifacts_dir if artifacts_dir is not None else default_artifacts_dir(url)

    from sweep.objective import Objective, Session, default_cache_dir, study_direction
    from sweep.space import describe_space_change, make_pruner, make_sampler, space_signature

    cache_dir = default_cache_dir()
    text = _check_data(config, cache_dir)
    signature = space_signature(config)

    opened = open_storage(url, heartbeat_interval=HEARTBEAT_INTERVAL_S)
    try:
        study_obj, created = open_study(
            opened,
            config.name,
            direction=study_direction(config),
            sampler=make_sampler(config),
            pruner=make_pruner(config),
            signature=signature,
            describe_change=describe_space_change,
            user_attrs={
                ATTR_CONFIG: config.resolved(),
                ATTR_METRIC: config.metric.name,
                ATTR_DATA_HASH: text.content_hash,
                ATTR_DATA_SOURCE: text.source,
                ATTR_SWEEP_VERSION: __version__,
            },
            enqueue=config.enqueue,
            signature_attr=ATTR_SIGNATURE,
        )
        if not created:
            # A seeded sampler would propose the first session's points again: offset the seed
            # by the trials there are (still reproducible for a given history).
            existing = len(study_obj.get_trials(deepcopy=False))
            study_obj.sampler = make_sampler(
                config.model_copy(update={"seed": config.seed + existing})
            )
        display = RunDisplay(out, err, config.metric.name, n_trials)
        objective = Objective(
            config,
            cache_dir=cache_dir,
            artifacts_dir=artifacts,
            on_start=display.trial_started,
            on_epoch=display.epoch_done,
        )
        session = Session(
            study_obj,
            objective,
            n_trials=n_trials,
            timeout=timeout,
            on_trial_end=display.trial_ended,
        )
        done = session.counted()
        verb = "created" if created else f"continuing ({done} finished trials)"
        # Said only now: a failed run prints nothing but its one error line.
        err.print(
            f"data: {text.source}: {len(text.train_texts)} train / {len(text.val_texts)} "
            f"validation examples, labels {', '.join(text.label_names)}",
            markup=False,
        )
        err.print(
            f"study {config.name} {verb} in {redact(url)}; running until {n_trials} trials",
            markup=False,
        )
        with display.live(done, best_value(study_obj)):
            session.run()
        print_summary(out, session, config.metric.name)
    finally:
        close_storage(opened)
    if session.interrupted:
        raise typer.Exit(130)


HEARTBEAT_INTERVAL_S = 60


def _check_data(config: Any, cache_dir: Path) -> Any:
    """Load and tokenize the study's data once (cached for the trials); raises DataError."""
    from sweep.models import PretrainedModel
    from sweep.trial import prepare_data, text_data

    spec = config.data_spec()
    text = text_data(spec)
    # One tokenization per tokenizer: all from-config sizes share the BPE trained on the data,
    # each pretrained model brings its own.
    seen: set[Any] = set()
    for model in config.model_specs().values():
        key = model.source if isinstance(model, PretrainedModel) else None
        if key not in seen:
            seen.add(key)
            prepare_data(spec, model, cache_dir)
    return text


# -- sweep status / studies / best ------------------------------------------------------------


def _read_storage(storage: str | None) -> Any:
    """Open the storage for reading: never creates a SQLite file."""
    return open_storage(resolve_storage_url(storage), must_exist=True)


def _pick_study(opened: Any, name: str | None, url: str) -> Any:
    import difflib

    import optuna

    names = study_names(opened)
    if name is None:
        if len(names) == 1:
            name = names[0]
        elif not names:
            raise StorageError(f"no studies in {redact(url)}")
        else:
            raise ConfigError(
                f"{redact(url)} holds {len(names)} studies ({', '.join(names)}); name one"
            )
    elif name not in names:
        near = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f" (studies: {', '.join(names)})"
        raise StorageError(f"no study named {name!r} in {redact(url)}{hint}")
    return optuna.load_study(study_name=name, storage=opened)


@app.command()
@_user_errors
def status(
    name: StudyNameArgument = None,
    storage: StorageOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show a study's trials, its best trial, counts by state and the sweep overhead.

    One row per trial: number, state, parameters, value, best epoch / epochs run, seconds and
    why it ended (complete, pruned at epoch k, nan-loss, error: message, interrupted).
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
        table.add_row(
            row["name"],
            str(row["trials"]),
            str(row["complete"]),
            fmt_number(row["best_value"]),
            row["metric"] or "-",
            row["direction"],
        )
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the best trial of a study; with --export, write its fine-tuned model.

    The export copies the model kept during the sweep (keep_best in the study file); if it was
    not kept, the trial is retrained from its recorded parameters and seed, and the export says
    so.
    """

    url = resolve_storage_url(storage)
    artifacts = artifacts_dir if artifacts_dir is not None else default_artifacts_dir(url)
    opened = _read_storage(storage)
    try:
        study_obj = _pick_study(opened, name, url)
        trial = best_trial(study_obj)
        if trial is None:
            raise StorageError(f"study {study_obj.study_name!r} has no complete trial yet")
        metric = study_obj.user_attrs.get(ATTR_METRIC) or "value"
        row = trial_row(trial)
        if as_json:
            typer.echo(json.dumps({**row, "user_attrs": trial.user_attrs}, indent=2, default=str))
        else:
            out, err = _consoles()
            out.print(best_line(row, metric), markup=False)
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
register_report(app)
register_launch(app)


def main() -> None:
    """Console-script entry point (`sweep`)."""
    try:
        app()
    except SweepError as e:  # raised outside a command (should not happen; belt and braces)
        typer.echo(f"error: {_one_line(e)}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
