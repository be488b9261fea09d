"""`sweep launch slurm`: an sbatch script that runs one `sweep worker` per GPU.

The script asks for `--nodes` nodes with one task per GPU; `--gpus-per-task=1` makes Slurm bind
each task to its own GPU (CUDA_VISIBLE_DEVICES). All tasks are one `srun` step of `sweep worker`
on the same study: they share it through the database, and each exits 0 once the study has its
budget of finished trials.

Preemption and time limits: `--signal=B:TERM@S` sends TERM to the batch shell S seconds before the
time limit. The shell passes it to the workers with `scancel --signal=TERM` (srun itself would
answer a TERM by killing its tasks outright), waits while each worker checkpoints its running
trial, marks it for retry and exits, and then requeues the job (`--requeue` makes it eligible), so
the study goes on in the job's next run. A preemption by Slurm (PreemptMode=REQUEUE) signals the
workers itself and requeues the job on its own.

The storage URL is never written into the script when it holds a password: the job reads
`$SWEEP_STORAGE` from the submitting shell (`--export=ALL`), and `--submit` hands it to sbatch
through the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sweep import __version__
from sweep.errors import ConfigError, SweepError
from sweep.launch._common import require_at_least, resolve_study, slug

# Seconds before the time limit at which the workers get TERM. A worker needs up to 30 s to
# checkpoint and record its trial; Slurm may send the signal up to 60 s early or late (its event
# loop's resolution), so 120 s leaves room for both.
DEFAULT_TERM_BEFORE_S = 120
_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})$")
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.,-]+$")  # partition lists and account names
# Slurm expands %x, %j ... in --output and does not let #SBATCH lines quote spaces.
_BAD_LOG_PATH = re.compile(r"[\s%\"'\\]")


class SubmitError(SweepError):
    """sbatch is missing or refused the job."""


@dataclass(frozen=True)
class SlurmOptions:
    """The options of `sweep launch slurm`, defined once: the CLI fills one, `slurm_job` checks
    and resolves it (see the command's help for what each means)."""

    storage: str | None = None
    nodes: int = 1
    gpus_per_node: int = 1  # 0: CPU workers, `workers_per_node` of them per node
    workers_per_node: int | None = None  # resolved: gpus_per_node, or 1 for CPU workers
    cpus_per_task: int | None = None
    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None  # [D-]HH:MM:SS
    trials: int | None = None
    checkpoint_dir: Path | None = None  # resolved: absolute
    artifacts_dir: Path | None = None  # resolved: absolute
    log_dir: Path | None = None  # resolved: absolute
    term_before_s: int = DEFAULT_TERM_BEFORE_S


@dataclass(frozen=True)
class SlurmJob:
    """Everything an sbatch script for a sweep needs, already checked (see `slurm_job`)."""

    study: str  # the study file (absolute path) or the name of a study in the storage
    study_name: str
    storage_url: str
    options: SlurmOptions  # resolved: every directory absolute, workers_per_node set

    @property
    def job_name(self) -> str:
        """The Slurm job name: `sweep-<study>`."""
        return f"sweep-{slug(self.study_name, max_len=50)}"

    @property
    def tasks(self) -> int:
        """Workers in the whole job."""
        return self.options.nodes * (self.options.workers_per_node or 1)

    @property
    def writes_storage_url(self) -> bool:
        """Whether the URL goes into the script: only when it holds no password."""
        return not url_has_password(self.storage_url)


def url_has_password(url: str) -> bool:
    """True when the database URL carries a password (which must stay out of files)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password is not None
    except Exception:
        return True  # unparsable: treat it as secret; check_storage_url reports it


def time_limit_seconds(value: str) -> int:
    """Seconds in a Slurm time limit written `[D-]HH:MM:SS`; ConfigError otherwise."""
    match = _TIME.match(value)
    if not match:
        raise ConfigError(f"--time must be HH:MM:SS or D-HH:MM:SS, got {value!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if minutes >= 60 or seconds >= 60:
        raise ConfigError(
            f"--time must be HH:MM:SS with minutes and seconds below 60, got {value!r}"
        )
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _check_url(url: str, nodes: int) -> None:
    from sweep.storage import parse_storage_url, redact

    parsed = parse_storage_url(url)  # StorageError for a malformed or unsupported URL
    if parsed.get_backend_name() == "sqlite" and nodes > 1:
        # Workers on several nodes would share the file over a network file system, whose
        # locking SQLite cannot trust: the database would end up corrupt.
        raise ConfigError(
            f"storage {redact(url)} is a SQLite file, which workers on {nodes} nodes cannot "
            "share: use a database server (postgresql+psycopg://user@host/db)"
        )


def slurm_job(study: str, options: SlurmOptions) -> SlurmJob:
    """Check the options of `sweep launch slurm` and resolve them into a `SlurmJob`.

    Reads the study file (validating it) and `$SWEEP_STORAGE`; relative directories are made
    absolute against the current directory, since the job may run anywhere on the cluster.
    Every mistake is one ConfigError (StorageError for a malformed URL).
    """
    from sweep.storage import STORAGE_ENV

    o = options
    for option, value, least in (
        ("--nodes", o.nodes, 1),
        ("--gpus-per-node", o.gpus_per_node, 0),
        ("--workers-per-node", o.workers_per_node, 1),
        ("--cpus-per-task", o.cpus_per_task, 1),
        ("--trials", o.trials, 1),
        ("--term-before", o.term_before_s, 1),
    ):
        require_at_least(option, value, least)
    for option, name in (("--partition", o.partition), ("--account", o.account)):
        if name is not None and not _SLURM_NAME.match(name):
            raise ConfigError(
                f"{option} must be a Slurm name (letters, digits, _.,-), got {name!r}"
            )
    _check_time(o)
    target = resolve_study(study, absolute=True)
    url = o.storage or os.environ.get(STORAGE_ENV) or target.storage
    if not url:
        raise ConfigError(
            "no storage: pass --storage URL or set $SWEEP_STORAGE (workers on a cluster share "
            "one database, e.g. postgresql+psycopg://user@host/db)"
        )
    _check_url(url, o.nodes)
    resolved = dataclasses.replace(o, workers_per_node=_workers_per_node(o), **_resolved_dirs(o))
    return SlurmJob(
        study=target.argument, study_name=target.name, storage_url=url, options=resolved
    )


def _workers_per_node(o: SlurmOptions) -> int:
    """One worker per GPU; --workers-per-node only for CPU workers (default 1)."""
    if o.gpus_per_node > 0:
        if o.workers_per_node is not None and o.workers_per_node != o.gpus_per_node:
            raise ConfigError(
                f"--workers-per-node {o.workers_per_node} with --gpus-per-node "
                f"{o.gpus_per_node}: GPU jobs run one worker per GPU (use --workers-per-node "
                "only with --gpus-per-node 0)"
            )
        return o.gpus_per_node
    return o.workers_per_node or 1


def _check_time(o: SlurmOptions) -> None:
    if o.time_limit is None:
        return
    # TERM may come up to 60 s earlier than asked; the job must outlive that by a margin.
    if time_limit_seconds(o.time_limit) <= o.term_before_s + 60:
        raise ConfigError(
            f"--time {o.time_limit} is too short: the workers get TERM {o.term_before_s} s "
            "(--term-before) before the limit; give the job more time"
        )


def _resolved_dirs(o: SlurmOptions) -> dict[str, Path]:
    """The job's directories, absolute, refused where Slurm or the script cannot take them."""
    dirs = {
        "checkpoint_dir": (o.checkpoint_dir or Path("checkpoints")).resolve(),
        "artifacts_dir": (o.artifacts_dir or Path("sweep-artifacts")).resolve(),
        "log_dir": (o.log_dir or Path("slurm-logs")).resolve(),
    }
    for field, path in dirs.items():
        if "\n" in str(path):
            option = "--" + field.replace("_", "-")
            raise ConfigError(f"{option} must be a single-line path, got {str(path)!r}")
    if _BAD_LOG_PATH.search(str(dirs["log_dir"])):
        raise ConfigError(
            f"--log-dir {dirs['log_dir']} holds a space, quote or '%', which #SBATCH "
            "--output cannot take"
        )
    return dirs


def render_slurm_script(job: SlurmJob) -> str:
    """The sbatch script for `job` (a pure function of it)."""
    o = job.options
    q = shlex.quote
    sbatch = [
        f"--job-name={job.job_name}",
        f"--nodes={o.nodes}",
        f"--ntasks={job.tasks}",
        f"--ntasks-per-node={o.workers_per_node}",
    ]
    if o.gpus_per_node > 0:
        # One GPU per task; Slurm then binds each task to its own GPU (implied
        # --gpu-bind=per_task:1), so every worker sees exactly one device.
        sbatch.append("--gpus-per-task=1")
    if o.cpus_per_task is not None:
        sbatch.append(f"--cpus-per-task={o.cpus_per_task}")
    if o.partition:
        sbatch.append(f"--partition={o.partition}")
    if o.account:
        sbatch.append(f"--account={o.account}")
    if o.time_limit:
        sbatch.append(f"--time={o.time_limit}")
    sbatch += [
        f"--signal=B:TERM@{o.term_before_s}",
        "--requeue",
        "--export=ALL",
        "--open-mode=append",
        f"--output={o.log_dir}/%x-%j.out",
    ]

    if job.writes_storage_url:
        storage = [
            "# The database every worker shares (the study's trials, and how far it got).",
            f"export SWEEP_STORAGE={q(job.storage_url)}",
        ]
    else:
        storage = [
            "# The database URL holds a password, so it is not written here: sbatch passes the",
            "# submitting shell's $SWEEP_STORAGE to the job (--export=ALL).",
            ': "${SWEEP_STORAGE:?set SWEEP_STORAGE to the database URL before running sbatch}"',
        ]

    srun = [
        "srun",
        '--output="$log_dir/%x-%j-task%t.out"',
        "--open-mode=append",
        # A worker that fails (a bad study file, a lost database) must not take the others down.
        "--kill-on-bad-exit=0",
    ]
    if o.cpus_per_task is not None:
        # Since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch.
        srun.append(f"--cpus-per-task={o.cpus_per_task}")
    worker = [
        f"sweep worker {q(job.study)}",
        '--checkpoint-dir "$checkpoint_dir"',
        '--artifacts-dir "$artifacts_dir"',
    ]
    if o.trials is not None:
        worker.append(f"--trials {o.trials}")
    per_gpu = (
        f"one per GPU, {o.gpus_per_node} per node"
        if o.gpus_per_node
        else f"CPU only, {o.workers_per_node} per node"
    )

    lines = [
        "#!/bin/bash",
        f"# Sweep workers for study {job.study_name!r} ({job.tasks} in all, {per_gpu}).",
        f"# Written by `sweep launch slurm` (sweep {__version__}). Submit from a shell where",
        "# `sweep` is on PATH (the job inherits the environment): sbatch THIS_FILE",
        *(f"#SBATCH {option}" for option in sbatch),
        "",
        "# No `set -e`: a trapped TERM makes `wait` return non-zero, and that is not a failure.",
        "set -uo pipefail",
        "",
        *storage,
        "# Checkpoints of running trials and the kept models: on a file system all nodes share,",
        "# since an interrupted trial may resume on another node.",
        f"checkpoint_dir={q(str(o.checkpoint_dir))}",
        f"artifacts_dir={q(str(o.artifacts_dir))}",
        f"log_dir={q(str(o.log_dir))}",
        'mkdir -p "$checkpoint_dir" "$artifacts_dir" "$log_dir"',
        "",
        "# TERM comes ahead of the time limit (--signal=B:TERM) or with a preemption. Pass it to",
        "# the workers themselves: srun would answer a TERM by killing its tasks. Each worker",
        "# checkpoints its trial, marks it for retry and exits 0; the job is then requeued.",
        "preempted=0",
        "trap 'preempted=1",
        '    echo "sweep: TERM at $(date -Is): stopping the workers, then requeueing"',
        '    scancel --signal=TERM "$SLURM_JOB_ID" || true\' TERM',
        "",
        'echo "sweep: job $SLURM_JOB_ID (run ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST"',
        " \\\n    ".join([" ".join(srun), *worker]) + " &",
        "srun_pid=$!",
        "# A trapped signal interrupts `wait`: wait again until srun has really finished.",
        'wait "$srun_pid"',
        "status=$?",
        'while kill -0 "$srun_pid" 2>/dev/null; do',
        '    wait "$srun_pid"',
        "    status=$?",
        "done",
        "",
        'if [ "$preempted" = 1 ]; then',
        "    # The study goes on in the job's next run; interrupted trials resume from their",
        "    # checkpoints. After a preemption Slurm may be requeueing the job already.",
        '    scontrol requeue "$SLURM_JOB_ID" || echo "sweep: scontrol requeue refused"',
        "fi",
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


def submit_slurm_script(script: str, storage_url: str) -> str:
    """Submit `script` with sbatch and return the job id.

    The storage URL travels in the environment ($SWEEP_STORAGE, passed on by --export=ALL), never
    on a command line or in a file. Raises SubmitError when sbatch is missing or refuses.
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SubmitError(
            "sbatch not found on PATH: run this on a Slurm login node, or write the script "
            "with -o FILE and submit it there with sbatch FILE"
        )
    env = {**os.environ, "SWEEP_STORAGE": storage_url}
    try:
        done = subprocess.run(
            [sbatch, "--parsable"],
            input=script,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SubmitError("sbatch did not answer within 120 s") from None
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        raise SubmitError(f"sbatch refused the job: {message}")
    # --parsable prints "jobid" or "jobid;cluster".
    return done.stdout.strip().split(";")[0]
