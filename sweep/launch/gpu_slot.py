"""Give each `docker compose up --scale worker=N` replica a GPU of its own.

Compose hands every replica of a service the same device request, so with `count: 1` all
replicas would train on the first GPU. Instead each worker container reserves all GPUs and starts
through this helper:

    python -m sweep.launch.gpu_slot --lock-dir /sweep/gpu-locks -- sweep worker STUDY ...

It lists the GPUs (`nvidia-smi`), takes an exclusive lock on the first free one's lock file in a
directory every replica mounts (a named volume: `flock` works across containers on one host),
sets CUDA_VISIBLE_DEVICES to that GPU's UUID and execs the command. The exec'd worker inherits the
open lock file, so the GPU stays taken until the worker exits (or its container dies) and no
sooner. More replicas than GPUs: the extra ones exit with code 2 and say so. No GPU at all, or
CUDA_VISIBLE_DEVICES already set: the command runs as it is.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("sweep.launch.gpu_slot")

DEFAULT_LOCK_DIR = Path("/sweep/gpu-locks")


def list_gpus() -> list[str]:
    """UUIDs of the GPUs this container sees, in nvidia-smi's order; [] without nvidia-smi.

    UUIDs rather than indices: CUDA numbers devices fastest-first by default, nvidia-smi by PCI
    bus, so an index could name a different GPU for CUDA than for the lock file.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    done = subprocess.run(
        [smi, "--query-gpu=uuid", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        logger.warning("nvidia-smi failed (%s): no GPU", done.stderr.strip() or done.returncode)
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def claim_gpu(lock_dir: Path, gpus: Sequence[str]) -> tuple[str, int] | None:
    """Lock the first free GPU of `gpus`; returns (uuid, the lock's file descriptor) or None.

    The descriptor is inheritable: keep it open (through exec) for as long as the GPU is used.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        fd = os.open(lock_dir / f"{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # Who holds it, for a person looking at the lock directory.
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
        os.set_inheritable(fd, True)
        return gpu, fd
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Claim a GPU, then exec the command after `--`; returns an exit code only on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m sweep.launch.gpu_slot",
        description="Run COMMAND on a GPU no other replica holds (see the module's docstring).",
    )
    parser.add_argument(
        "--lock-dir",
        type=Path,
        default=DEFAULT_LOCK_DIR,
        help=f"directory shared by all replicas (default {DEFAULT_LOCK_DIR})",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run (put it after --)")
    logging.basicConfig(level=logging.INFO, format="gpu_slot: %(message)s")

    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        logger.info(
            "CUDA_VISIBLE_DEVICES is set (%s): using it", os.environ["CUDA_VISIBLE_DEVICES"]
        )
    else:
        gpus = list_gpus()
        if not gpus:
            logger.info("no GPU found: running on CPU")
        else:
            claimed = claim_gpu(args.lock_dir, gpus)
            if claimed is None:
                logger.error(
                    "all %d GPUs are taken by other workers: scale to at most %d",
                    len(gpus),
                    len(gpus),
                )
                return 2
            gpu, _fd = claimed  # stays open through exec: the lock lives as long as the worker
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            logger.info("GPU %s (%d of %d)", gpu, gpus.index(gpu) + 1, len(gpus))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as e:
        logger.error("cannot run %s: %s", command[0], e.strerror)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
