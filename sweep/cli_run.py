"""`sweep run` and `sweep worker`: create or join a study and run its trials, in this process
or in N worker processes (sweep.launcher). Registered on the main app by sweep/cli.py."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from sweep import __version__
from sweep._cli_common import (
    ArtifactsOption,
    StorageOption,
    _consoles,
    _pick_study,
    _setup_logging,
    _user_errors,
    logger,
)
from sweep._run_display import RunDisplay, best_value, print_summary
from sweep.errors import ConfigError
from sweep.status import (
    ATTR_CONFIG,
    ATTR_DATA_DROPPED,
    ATTR_DATA_HASH,
    ATTR_DATA_SOURCE,
    ATTR_LABEL_NAMES,
    ATTR_METRIC,
    ATTR_SIGNATURE,
    ATTR_SWEEP_VERSION,
    best_line,
    best_trial,
    counts_towards_budget,
    dropped_text,
    trial_row,
)
from sweep.storage import (
    check_storage,
    close_storage,
    default_artifacts_dir,
    default_checkpoint_dir,
    open_storage,
    open_study,
    redact,
    resolve_storage_url,
)

# -- sweep run / sweep worker -----------------------------------------------------------------

DEFAULT_DB_WAIT_S = 600.0  # seconds a worker keeps retrying an unreachable database
DEFAULT_HEARTBEAT_S = 20.0  # seconds between heartbeats; 3 missed: the worker is lost
SQLITE_MAX_WORKERS = 4  # more workers than this on SQLite: say PostgreSQL is the right storage
WORKERS_POLL_S = 2.0  # how often `run --workers` reads the study to print finished trials


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


def _check_run_options(
    trials: int | None, timeout: float | None, heartbeat: float, db_wait: float
) -> None:
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")
    if not heartbeat > 0:
        raise ConfigError(f"--heartbeat must be a positive number of seconds, got {heartbeat}")
    if not db_wait >= 0:
        raise ConfigError(f"--db-wait must be a number of seconds >= 0, got {db_wait}")


def _load_config(study: Path | None, name: str | None) -> Any:
    from sweep.config import bundled_demo_path, check_study_name, load_study

    config = load_study(study if study is not None else bundled_demo_path())
    if name is not None:
        try:
            check_study_name(name)
        except ValueError as e:
            raise ConfigError(f"--name {name!r}: {e}") from None
        config = config.model_copy(update={"name": name})
    return config


def _config_from_storage(study_name: str, url: str) -> Any:
    """The config stored on an existing study (for `sweep worker NAME`)."""
    from sweep.config import StudyConfig

    opened = open_storage(url, must_exist=True)
    try:
        study_obj = _pick_study(opened, study_name, url)
        stored = study_obj.user_attrs.get(ATTR_CONFIG)
    finally:
        close_storage(opened)
    if stored is None:
        raise ConfigError(f"study {study_name!r} in {redact(url)} was not created by sweep")
    return StudyConfig.model_validate(stored)


def _open_run_study(
    config: Any, url: str, text: Any, *, one_of_many: bool = False
) -> tuple[Any, Any, bool]:
    """Create the study or join it; returns (storage, study, created). Race-free: many workers
    may call this at once (`one_of_many`: then each joining worker gets its own sampler seed)."""
    from sweep.objective import study_directions
    from sweep.space import describe_space_change, make_pruner, make_sampler, space_signature

    opened = open_storage(url)
    try:
        study_obj, created = open_study(
            opened,
            config.name,
            direction=study_directions(config),
            sampler=make_sampler(config),
            pruner=make_pruner(config),
            signature=space_signature(config),
            describe_change=describe_space_change,
            user_attrs={
                ATTR_CONFIG: config.resolved(),
                ATTR_METRIC: config.metric.name,
                ATTR_DATA_HASH: text.content_hash,
                ATTR_DATA_SOURCE: text.source,
                ATTR_SWEEP_VERSION: __version__,
                ATTR_LABEL_NAMES: list(text.label_names),
                ATTR_DATA_DROPPED: text.dropped_empty,
            },
            enqueue=config.enqueue,
            signature_attr=ATTR_SIGNATURE,
        )
        if not created:
            # A seeded sampler would propose the first session's points again: offset the seed
            # by the trials there are (still reproducible for a given history), and for one of
            # many workers by its process id too, or workers started together would all agree.
            seed = config.seed + len(study_obj.get_trials(deepcopy=False))
            if one_of_many:
                # Mixed, not added: seed + trials + pid collides for two workers whose pids
                # differ by as much as the trials they saw.
                mixed = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
                seed = int.from_bytes(hashlib.blake2b(mixed, digest_size=4).digest(), "big")
            study_obj.sampler = make_sampler(config.model_copy(update={"seed": seed}))
    except BaseException:
        close_storage(opened)
        raise
    return opened, study_obj, created


def _run_session(
    config: Any,
    study_obj: Any,
    *,
    n_trials: int,
    timeout: float | None,
    artifacts: Path,
    checkpoint_dir: Path | None,
    heartbeat: float,
    display: Any,
    cache_dir: Path,
    db_wait: float,
    stop: threading.Event | None = None,
) -> Any:
    """Run trials in this process until the budget is reached; returns the Session.

    `stop`: an event SIGTERM already sets (see `_stop_on_sigterm`), for the session to go on with.
    """
    from sweep.objective import Objective
    from sweep.session import Session

    objective = Objective(
        config,
        cache_dir=cache_dir,
        artifacts_dir=artifacts,
        checkpoint_root=checkpoint_dir,
        on_start=display.trial_started,
        on_epoch=display.epoch_done,
    )
    if stop is not None:
        objective.preempt = stop
    return Session(
        study_obj,
        objective,
        n_trials=n_trials,
        timeout=timeout,
        on_trial_end=display.trial_ended,
        heartbeat_interval=heartbeat,
        give_up_after=db_wait,
    )


@_user_errors
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
    heartbeat: HeartbeatOption = DEFAULT_HEARTBEAT_S,
    db_wait: DbWaitOption = DEFAULT_DB_WAIT_S,
) -> None:
    """Create a study, or continue it, and run trials until it has --trials finished ones.

    Finished means COMPLETE, PRUNED, or FAILed because of its parameters (nan-loss, an error in
    the fine-tune); trials interrupted by Ctrl-C do not count. Continuing a study with the same
    name and storage keeps its trials (the sampler learns from them) and refuses a changed
    search space. Ctrl-C stops cleanly: the running trial is marked failed (interrupted) and a
    summary is printed. With --workers or --gpus, several worker processes share the study.
    """
    out, err = _consoles()
    _setup_logging(err)
    _check_run_options(trials, timeout, heartbeat, db_wait)
    if workers < 0:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    gpu_list = None
    if gpus is not None:
        from sweep.launcher import parse_gpus

        gpu_list = parse_gpus(gpus)

    # Everything that can be wrong with the input is checked before the first write: the study
    # file, the storage URL, the data. A failed run leaves the storage as it was (and does not
    # create a SQLite file that was not there).
    config = _load_config(study, name)
    n_trials = trials if trials is not None else config.trials
    url = resolve_storage_url(storage, config.storage)
    # Before the data: a bad URL is reported in seconds; a server that is down is waited for
    # (--db-wait), as every later storage call does.
    check_storage(url, wait=db_wait)
    artifacts = artifacts_dir if artifacts_dir is not None else default_artifacts_dir(url)
    checkpoints = checkpoint_dir if checkpoint_dir is not None else default_checkpoint_dir(url)

    from sweep.objective import default_cache_dir

    cache_dir = default_cache_dir()
    text = _check_data(config, cache_dir)
    if workers == 0 and gpu_list is None:
        workers = 1
    elif gpu_list is None:
        gpu_list = _visible_gpus()
    elif workers == 0:
        workers = len(gpu_list)
    if workers > SQLITE_MAX_WORKERS and url.startswith("sqlite"):
        err.print(
            f"warning: {workers} workers on SQLite: every write waits for the one before; "
            "PostgreSQL is the right storage for more than "
            f"{SQLITE_MAX_WORKERS} (--storage postgresql+psycopg://user:pass@host/db)",
            markup=False,
        )

    opened, study_obj, created = _open_run_study(config, url, text)
    try:
        display = RunDisplay(out, err, config.metric.name, n_trials)
        done = sum(1 for t in study_obj.get_trials(deepcopy=False) if counts_towards_budget(t))
        verb = "created" if created else f"continuing ({done} finished trials)"
        # Said only now: a failed run prints nothing but its one error line.
        _print_data(err, text)
        where = f" with {workers} workers" if workers > 1 else ""
        err.print(
            f"study {config.name} {verb} in {redact(url)}; running until {n_trials} trials{where}",
            markup=False,
        )
        if workers > 1:
            from sweep.launcher import available_cores, plan_workers

            plans = plan_workers(workers, gpu_list or [], available_cores())
            args = [
                str(config.source_path or study or ""),
                "--name",
                config.name,
                "--trials",
                str(n_trials),
                "--artifacts-dir",
                str(artifacts),
                "--checkpoint-dir",
                str(checkpoints),
                "--heartbeat",
                str(heartbeat),
                "--db-wait",
                str(db_wait),
            ]
            if timeout is not None:
                args += ["--timeout", str(timeout)]
            with display.live(done, best_value(study_obj)):
                codes, interrupted = _watch_workers(plans, args, url, study_obj, display, n_trials)
            _print_workers_summary(out, study_obj, n_trials, config.metric.name, codes)
            if interrupted:
                raise typer.Exit(130)
            if any(code not in (0, 130) for code in codes):
                raise typer.Exit(1)
            return
        session = _run_session(
            config,
            study_obj,
            n_trials=n_trials,
            timeout=timeout,
            artifacts=artifacts,
            checkpoint_dir=checkpoints,
            heartbeat=heartbeat,
            display=display,
            cache_dir=cache_dir,
            db_wait=db_wait,
        )
        with display.live(done, best_value(study_obj)):
            session.run()
        print_summary(out, session, config.metric.name)
    finally:
        close_storage(opened)
    if session.interrupted:
        raise typer.Exit(130)


@_user_errors
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
    heartbeat: HeartbeatOption = DEFAULT_HEARTBEAT_S,
    db_wait: DbWaitOption = DEFAULT_DB_WAIT_S,
) -> None:
    """Join a study (creating it if needed) and run its trials until the study has --trials
    finished ones, with any number of other workers on this or other machines.

    Start one per GPU (each seeing only its own, CUDA_VISIBLE_DEVICES). SIGTERM: the running
    trial checkpoints, is queued again (preempted) and the worker exits 0. A worker killed
    outright is noticed by the others through its missing heartbeats; they retry its trial
    from its last checkpoint. The database may go away for up to 10 minutes.
    """
    # From the very start: a worker told to stop while it loads the data exits 0 as well.
    stop = _stop_on_sigterm()
    out, err = _consoles()
    _setup_logging(err)
    _check_run_options(trials, timeout, heartbeat, db_wait)
    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        config = _load_config(path, name)
        url = resolve_storage_url(storage, config.storage)
        check_storage(url, wait=db_wait)
    else:
        url = resolve_storage_url(storage)
        check_storage(url, wait=db_wait)
        config = _config_from_storage(study, url)
        if name is not None and name != study:
            raise ConfigError(f"--name {name!r} differs from the study named {study!r}")
    n_trials = trials if trials is not None else config.trials
    artifacts = artifacts_dir if artifacts_dir is not None else default_artifacts_dir(url)
    checkpoints = checkpoint_dir if checkpoint_dir is not None else default_checkpoint_dir(url)

    from sweep.objective import default_cache_dir, worker_id

    cache_dir = default_cache_dir()
    text = _check_data(config, cache_dir)
    if stop.is_set():
        err.print("worker stopped (SIGTERM) before it ran a trial", markup=False)
        return
    opened, study_obj, _ = _open_run_study(config, url, text, one_of_many=True)
    try:
        display = RunDisplay(out, err, config.metric.name, n_trials)
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        err.print(
            f"worker {worker_id()}{f' gpu {gpu}' if gpu else ''}: study {config.name} in "
            f"{redact(url)}, until {n_trials} trials",
            markup=False,
        )
        session = _run_session(
            config,
            study_obj,
            n_trials=n_trials,
            timeout=timeout,
            artifacts=artifacts,
            checkpoint_dir=checkpoints,
            heartbeat=heartbeat,
            display=display,
            cache_dir=cache_dir,
            db_wait=db_wait,
            stop=stop,
        )
        session.run()
        print_summary(out, session, config.metric.name)
    finally:
        close_storage(opened)
    if session.interrupted:
        raise typer.Exit(130)
    # Preempted (SIGTERM) is a clean exit: the trial is queued again for another worker.


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


def _visible_gpus() -> list[str]:
    """Every GPU this process can see, as CUDA_VISIBLE_DEVICES entries (none on a CPU box)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _watch_workers(
    plans: Any, args: list[str], url: str, study_obj: Any, display: Any, n_trials: int
) -> tuple[list[int], bool]:
    """Start the workers, print each trial as it finishes (read from the database), wait."""
    import time

    from sweep.launcher import forward_signals, restore_signals, start_workers
    from sweep.storage import STORAGE_ENV

    # The URL goes by environment, not argv: a password in argv shows in `ps`.
    env = {**os.environ, STORAGE_ENV: url}
    processes = start_workers(plans, args, env)
    previous = forward_signals(processes)
    interrupted = False
    shown: set[int] = set()
    try:
        while True:
            finished = all(p.poll() is not None for p in processes)
            try:
                trials = study_obj.get_trials(deepcopy=False)
            except Exception:  # the database is away: the workers ride it out, so do we
                logger.debug("could not read the study", exc_info=True)
                trials = []
            for trial in trials:
                if trial.state.is_finished() and trial.number not in shown:
                    shown.add(trial.number)
                    display.trial_ended(trial)
            if finished:
                break
            time.sleep(WORKERS_POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        for process in processes:
            process.wait()
    finally:
        restore_signals(previous)
    codes = [p.returncode for p in processes]
    return codes, interrupted or any(code == 130 for code in codes)


def _print_workers_summary(
    out: Any, study_obj: Any, n_trials: int, metric: str, codes: list[int]
) -> None:

    counted = sum(1 for t in study_obj.get_trials(deepcopy=False) if counts_towards_budget(t))
    out.print(
        f"done: study {study_obj.study_name} has {counted} of {n_trials} trials "
        f"({len(codes)} workers)",
        markup=False,
    )
    best = best_trial(study_obj)
    out.print(best_line(trial_row(best) if best is not None else None, metric), markup=False)
    for index, code in enumerate(codes):
        if code not in (0, 130):
            out.print(
                f"worker {index} exited with code {code} (its errors are above)", markup=False
            )


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


def register(app: typer.Typer) -> None:
    """Add `run` and `worker` to `app`."""
    app.command()(run)
    app.command()(worker)
