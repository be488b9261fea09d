"""`sweep run --workers N`: N local `sweep worker` processes on one study, one per GPU.

Each worker is pinned to its own GPU with CUDA_VISIBLE_DEVICES (so it sees exactly one device,
as on a cluster), or on a CPU-only machine to its own share of the cores (sched_setaffinity and
OMP_NUM_THREADS: two workers each using every core would only fight). The workers find each
other through the database alone; this process only starts them, forwards Ctrl-C and SIGTERM,
and waits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweep.errors import ConfigError, ExitCode

logger = logging.getLogger(__name__)

WORKERS_POLL_S = 2.0  # how often `run --workers` reads the study to print finished trials


@dataclass(frozen=True)
class WorkerPlan:
    """Where worker `index` runs: its GPU (None: CPU) and the cores it may use."""

    index: int
    gpu: str | None
    cores: tuple[int, ...] = field(default=())

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The worker's environment: `base` plus its GPU and thread settings."""
        env = dict(base)
        # An empty CUDA_VISIBLE_DEVICES hides every GPU: a CPU worker must not grab one.
        env["CUDA_VISIBLE_DEVICES"] = self.gpu if self.gpu is not None else ""
        if self.cores and "OMP_NUM_THREADS" not in base:
            env["OMP_NUM_THREADS"] = str(len(self.cores))
        return env


def parse_gpus(text: str) -> list[str]:
    """`"0,1,3"` -> ["0", "1", "3"]; ConfigError naming the bad entry."""
    gpus = [part.strip() for part in text.split(",")]
    for gpu in gpus:
        if not gpu.isdigit() and not gpu.startswith(("GPU-", "MIG-")):
            raise ConfigError(
                f"--gpus: {gpu!r} is not a GPU index or UUID (expected e.g. --gpus 0,1,2,3)"
            )
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus: {text!r} names a GPU twice")
    return gpus


def plan_workers(n_workers: int, gpus: Sequence[str], cores: Sequence[int]) -> list[WorkerPlan]:
    """One plan per worker: GPUs in turn if there are any, and the cores split evenly.

    With more workers than GPUs, GPUs are shared in turn (useful for tiny models only).
    """
    if n_workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {n_workers}")
    cores = sorted(cores)
    per_worker = max(1, len(cores) // n_workers)
    plans = []
    for index in range(n_workers):
        if len(cores) >= n_workers:
            mine = tuple(cores[index * per_worker : (index + 1) * per_worker])
        else:
            mine = (cores[index % len(cores)],) if cores else ()
        gpu = gpus[index % len(gpus)] if gpus else None
        plans.append(WorkerPlan(index=index, gpu=gpu, cores=mine))
    return plans


def available_cores() -> list[int]:
    """The cores this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def start_workers(
    plans: Sequence[WorkerPlan], worker_args: Sequence[str], base_env: Mapping[str, str]
) -> list[subprocess.Popen[bytes]]:
    """Start one `python -m sweep.cli worker ...` per plan.

    Their stdout (one line per trial) is dropped: this process prints every trial once, read from
    the database. Their stderr (warnings, errors) goes to ours.
    """
    processes = []
    for plan in plans:
        cores = set(plan.cores)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "sweep.cli", "worker", *worker_args],
                env=plan.env(base_env),
                stdout=subprocess.DEVNULL,
                # Pinning happens in the child before exec, so torch sees its share at import.
                preexec_fn=(lambda cores=cores: os.sched_setaffinity(0, cores)) if cores else None,
            )
        )
    return processes


def forward_signals(processes: Sequence[subprocess.Popen[bytes]]) -> dict[int, Any]:
    """Pass SIGTERM and SIGINT on to the workers (each then stops cleanly); returns the old
    handlers for `restore_signals`. Ctrl-C in a terminal already reaches the whole process
    group; forwarding covers `kill -INT <pid>` and schedulers that signal only the parent."""

    def forward(signum: int, frame: Any) -> None:
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it exited just now
                    process.send_signal(signum)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, forward)
    return previous


def restore_signals(previous: Mapping[int, Any]) -> None:
    """Put back the handlers `forward_signals` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def visible_gpus() -> list[str]:
    """Every GPU this process can see, as CUDA_VISIBLE_DEVICES entries (none on a CPU box)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def watch_workers(
    plans: Sequence[WorkerPlan],
    worker_args: Sequence[str],
    url: str,
    read_trials: Callable[[], Sequence[Any]],
    on_trial_end: Callable[[Any], None],
    poll_seconds: float = WORKERS_POLL_S,
) -> tuple[list[int], bool]:
    """Start the workers, pass each trial to `on_trial_end` as it finishes (read from the
    database with `read_trials`), wait for them; returns (exit codes, interrupted)."""
    from sweep.storage import STORAGE_ENV

    # The URL goes by environment, not argv: a password in argv shows in `ps`.
    processes = start_workers(plans, worker_args, {**os.environ, STORAGE_ENV: url})
    previous = forward_signals(processes)
    interrupted = False
    shown: set[int] = set()
    try:
        while True:
            finished = all(p.poll() is not None for p in processes)
            try:
                trials = read_trials()
            except Exception:  # the database is away: the workers ride it out, so do we
                logger.debug("could not read the study", exc_info=True)
                trials = []
            for trial in trials:
                if trial.state.is_finished() and trial.number not in shown:
                    shown.add(trial.number)
                    on_trial_end(trial)
            if finished:
                break
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        interrupted = True
        for process in processes:
            process.wait()
    finally:
        restore_signals(previous)
    codes = [p.returncode for p in processes]
    return codes, interrupted or any(code == ExitCode.INTERRUPTED for code in codes)
