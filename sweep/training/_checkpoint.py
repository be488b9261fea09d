"""Per-epoch training checkpoints, written atomically and loaded without unpickling code.

A checkpoint directory holds, for the last finished epoch k (or for step s of epoch k+1, when a
preempted run saved mid-epoch; then the files are named epoch-k-step-s.*):
  epoch-k.safetensors  the model weights (safetensors; shared tensors handled by save_model)
  epoch-k.pt           optimizer, scheduler, RNG states, epoch, metrics so far (torch.save of plain
                       types and tensors only, so it loads with torch.load(weights_only=True))
  latest.json          {"epoch": k, ...}: written last, with os.replace, so it is the commit point —
                       a crash mid-save leaves the previous epoch's checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from transformers import AutoTokenizer

from sweep.errors import (
    INFRASTRUCTURE_ERRNOS,
    ConfigError,
    DiskError,
    find_infrastructure_errno,
)
from sweep.study import OWNER_MARKER, is_owned, mark_owned

LATEST = "latest.json"
FORMAT_VERSION = 1
# Below this much free space a failed write is taken for a full disk: torch's zip writer says
# "[enforce fail at inline_container.cc] unexpected pos" instead of ENOSPC.
_NEARLY_FULL_BYTES = 4 * 2**20


@contextlib.contextmanager
def writing(directory: Path, what: str) -> Iterator[None]:
    """Turn a failed write under `directory` into a DiskError that says why, in one line.

    A full or broken disk is not the trial's fault: the caller records the trial as an
    infrastructure failure and runs it again, instead of counting it as a failed configuration.
    """
    try:
        yield
    except Exception as error:  # OSError, torch's RuntimeError, safetensors' SafetensorError...
        reason = _why_not_written(directory, error)
        if reason is None:
            raise
        raise DiskError(f"cannot write the {what} in {directory}: {reason}") from error


def _why_not_written(directory: Path, error: BaseException) -> str | None:
    """ "No space left on device" and the like, or None when the error is not the disk's."""
    found = find_infrastructure_errno(error)
    if found is not None:
        return os.strerror(found.errno) if found.errno is not None else str(found)
    # Rust and C++ writers report the OS error in their message only: "(os error 28)".
    code = re.search(r"os error (\d+)", str(error))
    if code is not None and int(code.group(1)) in INFRASTRUCTURE_ERRNOS:
        return os.strerror(int(code.group(1)))
    try:
        free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
    except OSError:
        return None
    if free < _NEARLY_FULL_BYTES:
        return f"No space left on device ({free // 1024} KiB free)"
    return None


def _atomic(path: Path) -> Path:
    """A temporary sibling of `path` to write before os.replace (same dir: same filesystem)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states as tensors and plain types."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() returned."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(int(x) for x in py_state.tolist()), py_gauss))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def read_latest(directory: Path) -> dict[str, Any] | None:
    """The commit record of the checkpoint in `directory`, or None if there is none (or torn)."""
    try:
        latest = json.loads((directory / LATEST).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    if latest.get("version") != FORMAT_VERSION:
        return None
    if not (directory / latest["weights"]).is_file() or not (directory / latest["state"]).is_file():
        return None
    return latest


def save_checkpoint(
    directory: Path,
    *,
    model: torch.nn.Module,
    epoch: int,
    state: dict[str, Any],
    fingerprint: str,
    extra: dict[str, Any] | None = None,
    step: int = 0,
) -> None:
    """Write the checkpoint of `epoch` (model weights + `state`), then commit it with latest.json.

    `step` > 0: the checkpoint is taken `step` steps into the epoch after `epoch`. `extra`
    (JSON-able) goes into latest.json, for what a caller needs before building the model.
    """
    with writing(directory, "checkpoint"):
        _save_checkpoint(directory, model, epoch, state, fingerprint, extra, step)


def _save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    epoch: int,
    state: dict[str, Any],
    fingerprint: str,
    extra: dict[str, Any] | None,
    step: int,
) -> None:
    mark_owned(directory)
    # Distinct names per (epoch, step): the files latest.json points at are never overwritten
    # before latest.json itself moves on.
    stem = f"epoch-{epoch}" if not step else f"epoch-{epoch}-step-{step}"
    weights = directory / f"{stem}.safetensors"
    blob = directory / f"{stem}.pt"
    tmp = _atomic(weights)
    # save_model, not save_file(state_dict): it drops the duplicate names of tied/shared tensors,
    # which safetensors refuses to store twice.
    save_model(model, str(tmp))
    os.replace(tmp, weights)
    tmp = _atomic(blob)
    torch.save(state, tmp)
    os.replace(tmp, blob)
    latest = {
        "version": FORMAT_VERSION,
        "epoch": epoch,
        "weights": weights.name,
        "state": blob.name,
        "fingerprint": fingerprint,
        **(extra or {}),
    }
    tmp = _atomic(directory / LATEST)
    tmp.write_text(json.dumps(latest))
    os.replace(tmp, directory / LATEST)
    # Only now is the older epoch's checkpoint garbage.
    for old in directory.glob("epoch-*"):
        if old.name not in (weights.name, blob.name):
            old.unlink(missing_ok=True)


def load_checkpoint(
    directory: Path, latest: dict[str, Any], model: torch.nn.Module, device: torch.device
) -> dict[str, Any]:
    """Load the committed weights into `model` and return the saved state (weights_only load).

    The state stays on the CPU: RNG states must be CPU tensors, and optimizer.load_state_dict
    moves each moment to its parameter's device itself.
    """
    load_model(model, str(directory / latest["weights"]), device=str(device))
    return torch.load(directory / latest["state"], map_location="cpu", weights_only=True)


def remove_checkpoint(directory: Path) -> None:
    """Delete the checkpoint files (and the directory if that leaves it empty)."""
    (directory / LATEST).unlink(missing_ok=True)
    for path in directory.glob("epoch-*"):
        path.unlink(missing_ok=True)
    for path in directory.glob(".*.tmp-*"):
        path.unlink(missing_ok=True)
    (directory / OWNER_MARKER).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


def save_best_model(
    directory: Path, model: Any, tokenizer_dir: Path, label_names: tuple[str, ...]
) -> None:
    """Write a loadable model folder: save_pretrained (safetensors) + tokenizer files + labels.json.

    Written to a temporary sibling first and swapped in, so a reader never sees half a model.
    A folder already at `directory` is replaced only if sweep made it (ConfigError otherwise).
    """
    directory = Path(directory)
    if directory.exists() and not is_owned(directory):
        raise ConfigError(f"{directory} exists and was not made by sweep: move it out of the way")
    with writing(directory.parent, "best model"):
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        # Through AutoTokenizer rather than copying files: tokenizer_dir may be a whole
        # pretrained model folder, and only its tokenizer belongs next to our weights.
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
        labels = {str(i): name for i, name in enumerate(label_names)}
        (tmp / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
        mark_owned(tmp)
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
