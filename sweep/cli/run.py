"""`sweep run` and `sweep worker`: create or join a study and run its trials, in this process or
in N worker processes (sweep.launch.local). What a worker does before its first trial is
sweep.runner.worker's; this module parses options and shows what happens."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from sweep.cli._common import (
    ArtifactsOption,
    StorageOption,
    consoles,
    pick_study,
    setup_logging,
    user_errors,
)
from sweep.cli._display import RunDisplay, best_value, print_summary, print_workers_summary
from sweep.errors import ConfigError, ExitCode
from sweep.runner import DEFAULT_INTERVAL_S
from sweep.storage import (
    DEFAULT_GIVE_UP_AFTER_S,
    check_storage,
    close_storage,
    default_artifacts_dir,
    default_checkpoint_dir,
    open_storage,
    redact,
    resolve_storage_url,
)
from sweep.study import counts_towards_budget
from sweep.study.text import dropped_text

__all__ = ["register"]

SQLITE_MAX_WORKERS = 4  # more workers than this on SQLite: say PostgreSQL is the right storage


TrialsOption = Annotated[
    int | None,
    typer.Option(
        "--trials",
        "-n",
        help="Run until the study has this many finished trials, from all workers together "
        "(default: the file's trials:).",
        show_default=False,
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option("--name", help="Study name (default: the file's name:).", show_default=False),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Start no new trial after this many seconds (a running trial finishes).",
        show_default=False,
    ),
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint-dir",
        help="Where running trials keep checkpoints; on a cluster, a path every worker can "
        "reach (default: checkpoints/ next to the SQLite file, else ./checkpoints).",
        show_default=False,
    ),
]
HeartbeatOption = Annotated[
    float,
    typer.Option(
        "--heartbeat",
        help="Seconds between a running trial's heartbeats; a worker silent for 3 of them is "
        "declared lost and its trial retried.",
    ),
]
DbWaitOption = Annotated[
    float,
    typer.Option(
        "--db-wait",
        help="Seconds to keep retrying a database that cannot be reached (a restart, a network "
        "blip) before giving up with an error.",
    ),
]


@user_errors
def run(
    study: Annotated[
        Path | None,
        typer.Argument(
            help="Study file (YAML). Default: the bundled demo study (synthetic data).",
            show_default=False,
        ),
    ] = None,
    trials: TrialsOption = None,
    storage: StorageOption = None,
    name: NameOption = None,
    timeout: TimeoutOption = None,
    artifacts_dir: ArtifactsOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            help="Worker processes on this machine (default: one; with --gpus, one per GPU).",
            show_default=False,
        ),
    ] = 0,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="GPUs to use, e.g. 0,1,2,3: one worker each (default with --workers: every "
            "visible GPU, else the CPU cores split between the workers).",
            show_default=False,
        ),
    ] = None,
    checkpoint_dir: CheckpointOption = None,
    heartbeat: HeartbeatOption = float(DEFAULT_INTERVAL_S),
    db_wait: DbWaitOption = DEFAULT_GIVE_UP_AFTER_S,
) -> None:
    """Create a study, or continue it, and run trials until it has --trials finished ones.

    Finished means COMPLETE, PRUNED, or FAILed because of its parameters (nan-loss, an error in
    the fine-tune); trials interrupted by Ctrl-C do not count. Continuing a study with the same
    name and storage keeps its trials (the sampler learns from them) and refuses a changed
    search space. Ctrl-C stops cleanly: the running trial is marked failed (interrupted) and a
    summary is printed. With --workers or --gpus, several worker processes share the study.
    """
    from sweep.runner.worker import check_options, load_config, open_run_study, prepare_data

    out, err = consoles()
    setup_logging(err)
    check_options(trials, timeout, heartbeat, db_wait)
    # Everything that can be wrong with the input is checked before the first write: the study
    # file, the storage URL, the data. A failed run leaves the storage as it was (and does not
    # create a SQLite file that was not there).
    config = load_config(study, name)
    url = resolve_storage_url(storage, config.storage)
    # Before the data: a bad URL is reported in seconds; a server that is down is waited for
    # (--db-wait), as every later storage call does.
    check_storage(url, wait=db_wait)
    options = _options(
        config, url, trials, timeout, artifacts_dir, checkpoint_dir, heartbeat, db_wait
    )
    text = prepare_data(config, options.cache_dir)
    workers, gpu_list = _workers_and_gpus(workers, gpus)
    if workers > SQLITE_MAX_WORKERS and url.startswith("sqlite"):
        err.print(
            f"warning: {workers} workers on SQLite: every write waits for the one before; "
            "PostgreSQL is the right storage for more than "
            f"{SQLITE_MAX_WORKERS} (--storage postgresql+psycopg://user:pass@host/db)",
            markup=False,
        )
    opened, study_obj, created = open_run_study(config, url, text)
    try:
        display = RunDisplay(out, err, config.metric.name, options.n_trials)
        done = sum(1 for t in study_obj.get_trials(deepcopy=False) if counts_towards_budget(t))
        verb = "created" if created else f"continuing ({done} finished trials)"
        _print_data(err, text)  # said only now: a failed run prints nothing but its error
        where = f" with {workers} workers" if workers > 1 else ""
        err.print(
            f"study {config.name} {verb} in {redact(url)}; running until {options.n_trials} "
            f"trials{where}",
            markup=False,
        )
        if workers > 1:
            args = options.command_line(str(config.source_path or study or ""), config.name)
            _run_workers(workers, gpu_list, args, url, study_obj, display, out)
            return
        session = options.session(
            config,
            study_obj,
            on_start=display.trial_started,
            on_epoch=display.epoch_done,
            on_trial_end=display.trial_ended,
        )
        with display.live(done, best_value(study_obj)):
            session.run()
        print_summary(out, session, config.metric.name)
    finally:
        close_storage(opened)
    if session.interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)


@user_errors
def worker(
    study: Annotated[
        str,
        typer.Argument(
            help="Study file (YAML), or the name of a study that exists in the storage.",
            show_default=False,
        ),
    ],
    trials: TrialsOption = None,
    storage: StorageOption = None,
    name: NameOption = None,
    timeout: TimeoutOption = None,
    artifacts_dir: ArtifactsOption = None,
    checkpoint_dir: CheckpointOption = None,
    heartbeat: HeartbeatOption = float(DEFAULT_INTERVAL_S),
    db_wait: DbWaitOption = DEFAULT_GIVE_UP_AFTER_S,
) -> None:
    """Join a study (creating it if needed) and run its trials until the study has --trials
    finished ones, with any number of other workers on this or other machines.

    Start one per GPU (each seeing only its own, CUDA_VISIBLE_DEVICES). SIGTERM: the running
    trial checkpoints, is queued again (preempted) and the worker exits 0. A worker killed
    outright is noticed by the others through its missing heartbeats; they retry its trial
    from its last checkpoint. The database may go away for up to 10 minutes.
    """
    from sweep.runner import worker_id
    from sweep.runner.worker import check_options, open_run_study, prepare_data

    # From the very start: a worker told to stop while it loads the data exits 0 as well.
    stop = _stop_on_sigterm()
    out, err = consoles()
    setup_logging(err)
    check_options(trials, timeout, heartbeat, db_wait)
    config, url = _worker_config(study, storage, name, db_wait)
    options = _options(
        config, url, trials, timeout, artifacts_dir, checkpoint_dir, heartbeat, db_wait
    )
    text = prepare_data(config, options.cache_dir)
    if stop.is_set():
        err.print("worker stopped (SIGTERM) before it ran a trial", markup=False)
        return
    opened, study_obj, _ = open_run_study(config, url, text, one_of_many=True)
    try:
        display = RunDisplay(out, err, config.metric.name, options.n_trials)
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        err.print(
            f"worker {worker_id()}{f' gpu {gpu}' if gpu else ''}: study {config.name} in "
            f"{redact(url)}, until {options.n_trials} trials",
            markup=False,
        )
        session = options.session(
            config,
            study_obj,
            on_start=display.trial_started,
            on_epoch=display.epoch_done,
            on_trial_end=display.trial_ended,
            stop=stop,
        )
        session.run()
        print_summary(out, session, config.metric.name)
    finally:
        close_storage(opened)
    if session.interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)
    # Preempted (SIGTERM) is a clean exit: the trial is queued again for another worker.


def _options(
    config: Any,
    url: str,
    trials: int | None,
    timeout: float | None,
    artifacts_dir: Path | None,
    checkpoint_dir: Path | None,
    heartbeat: float,
    db_wait: float,
) -> Any:
    """The worker options of this command, defaults filled in from the study and the URL."""
    from sweep.data import default_cache_dir
    from sweep.runner.worker import WorkerOptions

    return WorkerOptions(
        n_trials=trials if trials is not None else config.trials,
        artifacts_dir=artifacts_dir or default_artifacts_dir(url),
        checkpoint_dir=checkpoint_dir or default_checkpoint_dir(url),
        cache_dir=default_cache_dir(),
        timeout=timeout,
        heartbeat=heartbeat,
        db_wait=db_wait,
    )


def _worker_config(study: str, storage: str | None, name: str | None, db_wait: float) -> Any:
    """(config, storage URL) of `sweep worker STUDY`: a study file, or a study in the storage."""
    from sweep.runner.worker import config_from_storage, load_config

    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        config = load_config(path, name)
        url = resolve_storage_url(storage, config.storage)
        check_storage(url, wait=db_wait)
        return config, url
    url = resolve_storage_url(storage)
    check_storage(url, wait=db_wait)
    if name is not None and name != study:
        raise ConfigError(f"--name {name!r} differs from the study named {study!r}")
    opened = open_storage(url, must_exist=True)
    try:
        return config_from_storage(pick_study(opened, study, url), url), url
    finally:
        close_storage(opened)


def _workers_and_gpus(workers: int, gpus: str | None) -> tuple[int, list[str] | None]:
    """How many worker processes, and on which GPUs (None: the CPU cores split between them)."""
    from sweep.launch.local import parse_gpus, visible_gpus

    if workers < 0:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    gpu_list = parse_gpus(gpus) if gpus is not None else None
    if workers == 0 and gpu_list is None:
        return 1, None
    if gpu_list is None:
        return workers, visible_gpus()
    return workers or len(gpu_list), gpu_list


def _run_workers(
    workers: int,
    gpus: list[str] | None,
    args: list[str],
    url: str,
    study: Any,
    display: Any,
    out: Any,
) -> None:
    """`sweep run --workers N`: start N `sweep worker` processes, show their trials, wait."""
    from sweep.launch.local import available_cores, plan_workers, watch_workers

    plans = plan_workers(workers, gpus or [], available_cores())
    done = sum(1 for t in study.get_trials(deepcopy=False) if counts_towards_budget(t))
    with display.live(done, best_value(study)):
        codes, interrupted = watch_workers(
            plans, args, url, lambda: study.get_trials(deepcopy=False), display.trial_ended
        )
    print_workers_summary(out, study, display.n_trials, display.metric, codes)
    if interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)
    if any(code not in (ExitCode.OK, ExitCode.INTERRUPTED) for code in codes):
        raise typer.Exit(ExitCode.BUG)


def _print_data(err: Any, text: Any) -> None:
    """What the trials train on: the source, the rows, the labels, and any rows dropped."""
    err.print(
        f"data: {text.source}: {len(text.train_texts)} train / {len(text.val_texts)} "
        f"validation examples, labels {', '.join(text.label_names)}",
        markup=False,
    )
    if text.dropped_empty:
        err.print(f"data: {dropped_text(text.dropped_empty)}", markup=False)


def _stop_on_sigterm() -> threading.Event:
    """An event that SIGTERM sets from now on (instead of killing the process)."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    return stop


def register(app: typer.Typer) -> None:
    """Add `run` and `worker` to `app`."""
    for command in (run, worker):
        app.command()(command)
