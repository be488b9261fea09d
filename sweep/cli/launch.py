"""`sweep launch slurm|k8s`: a Slurm batch script or a Kubernetes Job that runs sweep workers.

Both commands fill their options' dataclass (sweep.launch's `SlurmOptions` / `K8sOptions`, where
the options and their defaults are defined once), render text from it and print it, or write it
with -o FILE; `slurm --submit` hands the script to sbatch. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sweep.cli._common import user_errors
from sweep.launch.k8s import K8sOptions
from sweep.launch.slurm import SlurmOptions

__all__ = ["register"]

Options = TypeVar("Options")
_SLURM = SlurmOptions()
_K8S = K8sOptions()


def options_from(kind: type[Options], given: dict[str, Any]) -> Options:
    """The `kind` options dataclass filled from a command's arguments of the same names."""
    names = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    return kind(**{name: value for name, value in given.items() if name in names})


StudyArgument = Annotated[
    str,
    typer.Argument(
        help="Study file (YAML), or the name of a study already in the storage.",
        show_default=False,
    ),
]
TrialsOption = Annotated[
    int | None,
    typer.Option(
        "--trials",
        "-n",
        help="Study-wide budget of finished trials (default: the file's trials:).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write to FILE instead of printing.", show_default=False),
]


def _write(path: Path, text: str, *, executable: bool) -> None:
    from sweep.errors import ConfigError

    try:
        path.write_text(text, encoding="utf-8")
        if executable:
            path.chmod(path.stat().st_mode | 0o111)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    typer.echo(f"wrote {path}", err=True)


def slurm(
    study: StudyArgument,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Database URL all workers share (default: $SWEEP_STORAGE, then the study "
            "file's storage:). A URL with a password is never written into the script: the job "
            "reads $SWEEP_STORAGE from the shell that runs sbatch (--submit passes it).",
            show_default=False,
        ),
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", help="Nodes to run workers on.")] = _SLURM.nodes,
    gpus_per_node: Annotated[
        int,
        typer.Option(
            "--gpus-per-node",
            help="GPUs per node: one worker (one task) per GPU, each seeing only its own GPU. "
            "0: CPU workers.",
        ),
    ] = _SLURM.gpus_per_node,
    workers_per_node: Annotated[
        int | None,
        typer.Option(
            "--workers-per-node",
            help="CPU workers per node, with --gpus-per-node 0 (default 1).",
            show_default=False,
        ),
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            "--cpus-per-task",
            help="CPU cores per worker (default: the cluster's).",
            show_default=False,
        ),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="Slurm partition.", show_default=False),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("--account", help="Slurm account to charge.", show_default=False),
    ] = None,
    time_limit: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Time limit per run of the job, HH:MM:SS or D-HH:MM:SS (default: the "
            "partition's). The job is requeued until the study has its trials.",
            show_default=False,
        ),
    ] = None,
    trials: TrialsOption = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir",
            help="Checkpoints of running trials, on a file system all nodes share "
            "(default: ./checkpoints, made absolute).",
            show_default=False,
        ),
    ] = None,
    artifacts_dir: Annotated[
        Path | None,
        typer.Option(
            "--artifacts-dir",
            help="Kept models, on a shared file system (default: ./sweep-artifacts).",
            show_default=False,
        ),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            help="The job's log and one log per worker task (default: ./slurm-logs).",
            show_default=False,
        ),
    ] = None,
    term_before_s: Annotated[
        int,
        typer.Option(
            "--term-before",
            help="Seconds before the time limit at which workers get TERM: they checkpoint, "
            "and the job requeues itself.",
        ),
    ] = _SLURM.term_before_s,
    output: OutputOption = None,
    submit: Annotated[
        bool,
        typer.Option("--submit", help="Submit the script with sbatch and print the job id."),
    ] = False,
) -> None:
    """Write an sbatch script that runs one `sweep worker` per GPU on Slurm.

    Each task is one worker that sees only its own GPU; all share the study through the
    database. The job asks for TERM ahead of its time limit (--signal=B:TERM), passes it to the
    workers (each checkpoints its trial and marks it for retry) and requeues itself (--requeue);
    a preempted job is requeued by Slurm. Logs: one file for the job and one per task in
    --log-dir. Submit from a shell where `sweep` is on PATH: the job inherits the environment
    (--export=ALL), $SWEEP_STORAGE included.
    """
    from sweep.launch.slurm import render_slurm_script, slurm_job, submit_slurm_script

    job = slurm_job(study, options_from(SlurmOptions, locals()))
    script = render_slurm_script(job)
    log_dir = job.options.log_dir
    assert log_dir is not None  # resolved by slurm_job
    if output is not None or submit:
        # sbatch opens the job's log before the script runs: its directory must exist.
        log_dir.mkdir(parents=True, exist_ok=True)
    if output is not None:
        _write(output, script, executable=True)
    if submit:
        job_id = submit_slurm_script(script, job.storage_url)
        typer.echo(job_id)
        typer.echo(f"submitted job {job_id}; logs in {log_dir}", err=True)
        return
    if output is None:
        typer.echo(script, nl=False)
    if not job.writes_storage_url:
        typer.echo(
            "note: the storage URL holds a password, so the script reads $SWEEP_STORAGE from "
            "the environment: export it before running sbatch",
            err=True,
        )


def k8s(
    study: Annotated[
        str,
        typer.Argument(
            help="Study file as a path inside the image (e.g. studies/sst2.yaml), or the name "
            "of a study already in the storage.",
            show_default=False,
        ),
    ],
    storage_secret: Annotated[
        str,
        typer.Option(
            "--storage-secret",
            help="Secret that holds the database URL (read into $SWEEP_STORAGE; the URL is "
            "never written into the manifest).",
            show_default=False,
        ),
    ],
    secret_key: Annotated[
        str, typer.Option("--secret-key", help="Key of the URL in that Secret.")
    ] = _K8S.secret_key,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker pods (the Job's parallelism).")
    ] = _K8S.workers,
    gpus_per_worker: Annotated[
        int,
        typer.Option("--gpus-per-worker", help="nvidia.com/gpu per pod (0: CPU workers)."),
    ] = _K8S.gpus_per_worker,
    image: Annotated[
        str,
        typer.Option("--image", help="Worker image (built from the repository's Dockerfile)."),
    ] = _K8S.image,
    checkpoint_claim: Annotated[
        str,
        typer.Option(
            "--checkpoint-claim",
            help="ReadWriteMany PersistentVolumeClaim for checkpoints and kept models, "
            "mounted in every pod.",
        ),
    ] = _K8S.checkpoint_claim,
    checkpoint_dir: Annotated[
        str,
        typer.Option("--checkpoint-dir", help="Where the claim's checkpoints/ is mounted."),
    ] = _K8S.checkpoint_dir,
    artifacts_dir: Annotated[
        str,
        typer.Option("--artifacts-dir", help="Where the claim's artifacts/ is mounted."),
    ] = _K8S.artifacts_dir,
    trials: TrialsOption = None,
    job_name: Annotated[
        str | None,
        typer.Option(
            "--job-name", help="The Job's name (default: sweep-STUDY).", show_default=False
        ),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Write a Kubernetes Indexed Job that runs --workers sweep workers, one GPU each.

    The database URL comes from a Secret; checkpoints live on a shared PersistentVolumeClaim.
    A preempted or evicted pod is started again without counting as a failure (pod failure
    policy); a mistake in the study or the URL (exit code 2) fails the Job. No Service: the
    workers only talk to the database. Apply with `kubectl apply -f FILE`.
    """
    from sweep.launch.k8s import k8s_job, render_k8s_manifest

    job = k8s_job(study, options_from(K8sOptions, locals()))
    manifest = render_k8s_manifest(job)
    if output is not None:
        _write(output, manifest, executable=False)
    else:
        typer.echo(manifest, nl=False)


def register(app: typer.Typer) -> None:
    """Add `sweep launch slurm` and `sweep launch k8s` to `app`."""
    launch_app = typer.Typer(
        name="launch",
        help="Write a Slurm batch script or a Kubernetes Job that runs sweep workers on a cluster.",
        no_args_is_help=True,
        rich_markup_mode="markdown",
    )
    launch_app.command("slurm")(user_errors(slurm))
    launch_app.command("k8s")(user_errors(k8s))
    app.add_typer(launch_app, name="launch")
