"""The device a fine-tune runs on: which one, how to name it, its threads, precision and peak
memory, and seeding every random number generator a trial uses."""

from __future__ import annotations

import contextlib
import os
import random
import resource
from typing import Any

import numpy as np
import torch

from sweep.errors import ConfigError

__all__ = [
    "autocast",
    "configure_cpu_threads",
    "describe_device",
    "peak_memory_mb",
    "prepare_device",
    "resolve_device",
    "seed_everything",
]


def configure_cpu_threads() -> int:
    """Use one torch thread per core this process may run on; return that number.

    os.sched_getaffinity, not os.cpu_count: several workers on one machine are pinned to disjoint
    cores by their launcher, and each should use exactly its own. An explicit OMP_NUM_THREADS
    wins, as it does for torch itself: whoever set it chose (e.g. a test run on a shared machine).
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    with contextlib.suppress(KeyError, ValueError):
        n = max(1, int(os.environ["OMP_NUM_THREADS"]))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(device: str | None) -> torch.device:
    """`device` (default: CUDA when there is one) as a torch.device, a CUDA one with its index."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine")
        if dev.index is None:  # name the card: peak memory and the device string need an index
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def prepare_device(dev: torch.device) -> None:
    """Threads on a CPU; TF32 and a fresh peak-memory count on a GPU."""
    if dev.type == "cpu":
        configure_cpu_threads()
    if dev.type == "cuda":
        # TF32 for the fp32 matmuls autocast leaves alone: same range, several times the speed.
        # (The one stable switch; mixing torch's legacy allow_tf32 flags with its newer
        # fp32_precision ones, as other libraries may, can make torch raise.)
        torch.set_float32_matmul_precision("high")
        torch.cuda.reset_peak_memory_stats(dev)


def describe_device(dev: torch.device) -> str:
    """`cuda:0 NVIDIA H200`, `cpu (2 threads)`: what a trial records as its device."""
    if dev.type == "cuda":
        return f"cuda:{dev.index} {torch.cuda.get_device_name(dev)}"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(dev)


def peak_memory_mb(dev: torch.device) -> float:
    """CUDA's peak allocated memory, or on a CPU the process's peak resident memory, in MiB."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def autocast(dev: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (where supported); plain fp32 elsewhere."""
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (every CUDA device's too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
