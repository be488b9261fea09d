"""The tabular side of benchmarks/search.py: a discretised space, its real fine-tunes, the table.

Every configuration of the grid (model size x learning rate x batch size) is fine-tuned ONCE, for
the largest epochs value, with sweep's own code (sweep.training.prepare_data -> fine_tune on
sweep.config.PRESETS). Each epoch's validation loss, accuracy and wall seconds go into a JSON
table, which is rewritten (atomically) after every configuration, so a build that is stopped goes
on where it stopped when the same command runs again.

This module needs torch, transformers and sweep's data/training code, but neither optuna nor
pydantic: the build runs on a GPU image that has only the former.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "sweep-search-table/1"

# The space of studies/sst2.yaml (kept in step by tests/test_search_benchmark.py): what a sweep
# of SST-2 searches, and the fixed settings its trials train with.
LR_RANGE = (1.0e-4, 3.0e-3)
BATCH_SIZES = (16, 32, 64)
MODEL_SIZES = ("nano", "micro", "mini")
MAX_EPOCHS = 4
MAX_LENGTH = 64
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.1


class TableError(Exception):
    """A table that cannot be used or resumed; the message is one line for the user."""


@dataclass(frozen=True)
class TableSpec:
    """What a table measures: the data, the grid, and the settings every fine-tune shares."""

    data_dir: Path
    limit_train: int | None = 8000
    max_length: int = MAX_LENGTH
    model_sizes: tuple[str, ...] = MODEL_SIZES
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    lr_range: tuple[float, float] = LR_RANGE
    n_lrs: int = 4
    epochs: int = MAX_EPOCHS
    seed: int = 0
    weight_decay: float = WEIGHT_DECAY
    warmup_ratio: float = WARMUP_RATIO

    def learning_rates(self) -> list[float]:
        """The grid's learning rates: see `lr_grid`."""
        return lr_grid(*self.lr_range, self.n_lrs)

    def configs(self) -> Iterator[tuple[str, int, float]]:
        """(model size, batch size, learning rate) of every grid point, smallest models first."""
        for size in self.model_sizes:
            for batch in self.batch_sizes:
                for lr in self.learning_rates():
                    yield size, batch, lr

    def grid(self) -> dict[str, Any]:
        """The grid as stored in the table (and read back by the replay)."""
        return {
            "model_size": list(self.model_sizes),
            "batch_size": list(self.batch_sizes),
            "learning_rate": self.learning_rates(),
            "learning_rate_range": list(self.lr_range),
            "epochs": self.epochs,
        }

    def settings(self) -> dict[str, Any]:
        """The settings a resumed build must share with the table it continues."""
        return {
            "limit_train": self.limit_train,
            "max_length": self.max_length,
            "seed": self.seed,
            "weight_decay": self.weight_decay,
            "warmup_ratio": self.warmup_ratio,
        }


def lr_grid(low: float, high: float, n: int) -> list[float]:
    """`n` learning rates: the centres (in log space) of `n` equal bins of [low, high].

    The replay samples the learning rate from the log range [low, high], as the study does, and
    snaps it to its bin's centre (`snap_lr`): a log-uniform draw then lands on each grid value
    with the same probability, and the sampler still sees an ordered, continuous parameter.
    """
    if not 0 < low < high or n < 1:
        raise ValueError(f"need 0 < low < high and n >= 1, got {low}, {high}, {n}")
    width = math.log(high / low) / n
    # 3 significant digits: readable in the table, and well inside each bin.
    return [float(f"{low * math.exp((i + 0.5) * width):.3g}") for i in range(n)]


def snap_lr(lr: float, grid: dict[str, Any]) -> float:
    """The grid learning rate whose log-space bin of `learning_rate_range` holds `lr`."""
    low, high = grid["learning_rate_range"]
    values = grid["learning_rate"]
    width = math.log(high / low) / len(values)
    index = math.floor(math.log(lr / low) / width)
    return values[min(max(index, 0), len(values) - 1)]


def default_cache_dir() -> Path:
    """``$SWEEP_CACHE_DIR``, else ``~/.cache/sweep``: where sweep caches tokenizers.

    The same rule as sweep.data.default_cache_dir, repeated because that module imports
    optuna, which the GPU image that builds the table does not have.
    """
    env = os.environ.get("SWEEP_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sweep"


def default_table_path(data_dir: Path, limit_train: int | None, max_length: int) -> Path:
    """Where a table of this data lives unless a path is given: outside the repository."""
    limit = "all" if limit_train is None else str(limit_train)
    name = f"search-{Path(data_dir).resolve().name}-limit{limit}-len{max_length}.json"
    return default_cache_dir() / "benchmarks" / name


def _key(size: str, batch: int, lr: float) -> tuple[str, int, float]:
    return size, int(batch), float(lr)


def row_key(row: dict[str, Any]) -> tuple[str, int, float]:
    """The grid point a table row belongs to."""
    return _key(row["model_size"], row["batch_size"], row["learning_rate"])


def load_table(path: Path) -> dict[str, Any]:
    """Read a table; TableError (one line) if it is missing, unreadable or not a table."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TableError(f"no table at {path}") from None
    except (OSError, ValueError) as exc:
        raise TableError(f"cannot read the table {path}: {exc}") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise TableError(f"{path} is not a search table (format {FORMAT})")
    for key in ("made", "grid", "rows"):
        if key not in table:
            raise TableError(f"{path}: the table has no {key!r}")
    return table


def missing_configs(table: dict[str, Any]) -> list[tuple[str, int, float]]:
    """Grid points the table has no row for (a build that was stopped before the end)."""
    grid = table["grid"]
    done = {row_key(r) for r in table["rows"]}
    return [
        _key(size, batch, lr)
        for size in grid["model_size"]
        for batch in grid["batch_size"]
        for lr in grid["learning_rate"]
        if _key(size, batch, lr) not in done
    ]


def write_table(path: Path, table: dict[str, Any]) -> None:
    """Write `table` so that a reader (or a crash) never sees half a file: tmp + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    import sweep

    return {
        "sweep": sweep.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _device(requested: str | None) -> tuple[Any, str]:
    """The torch device and how the table names it (what its timings are valid for)."""
    import torch

    from sweep.training import configure_cpu_threads

    dev = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TableError(f"device {requested!r}: CUDA is not available on this machine")
        dev = torch.device("cuda", dev.index if dev.index is not None else 0)
        return dev, f"cuda {torch.cuda.get_device_name(dev)}"
    # Timings on a CPU depend on how many cores the loop may use (taskset, OMP_NUM_THREADS).
    return dev, f"cpu ({configure_cpu_threads()} threads, {_cpu_model()})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def _head(data: Any, n: int) -> Any:
    """The first `n` training rows of tokenized `data` (validation unchanged)."""
    n = min(n, len(data.train_labels))
    return dataclasses.replace(
        data,
        train_ids=data.train_ids[: data.train_offsets[n]],
        train_offsets=data.train_offsets[: n + 1],
        train_labels=data.train_labels[:n],
    )


def build_table(
    path: Path,
    spec: TableSpec,
    *,
    device: str | None = None,
    cache_dir: Path | None = None,
    budget_seconds: float | None = None,
    max_new: int | None = None,
    command: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune every configuration of `spec` that `path` has no row for; return the table.

    The table at `path` is rewritten after every configuration, so stopping the build (Ctrl-C, a
    time limit) loses at most the configuration in progress, and the same call goes on from
    there. A table made from other data, settings or another device is refused (TableError):
    its rows could not be compared with new ones. No new configuration starts once
    `budget_seconds` have passed or `max_new` were trained in this call.
    """
    from sweep.config import PRESETS, DataConfig, ModelConfig
    from sweep.data import text_data
    from sweep.training import TrialParams, fine_tune, prepare_data

    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    for size in spec.model_sizes:
        if size not in PRESETS:
            raise TableError(f"unknown model size {size!r}; sizes: {', '.join(PRESETS)}")
    data_spec = DataConfig(
        train=Path(spec.data_dir) / "train.csv",
        validation=Path(spec.data_dir) / "validation.csv",
        max_length=spec.max_length,
        limit_train=spec.limit_train,
        split_seed=0,
    )
    text = text_data(data_spec)
    dev, device_name = _device(device)
    made = {
        "data": str(Path(spec.data_dir).resolve()),
        "content_hash": text.content_hash,
        "train_rows": len(text.train_labels),
        "validation_rows": len(text.val_labels),
        **spec.settings(),
        "device": device_name,
        "host": socket.gethostname(),
        "versions": _versions(),
        "command": command or [],
        "started": _now(),
        "updated": _now(),
        "build_seconds": 0.0,
    }
    if Path(path).exists():
        table = load_table(path)
        _check_resumable(table, made, spec, path)
        table["grid"] = spec.grid()
        made["started"] = table["made"]["started"]
        made["build_seconds"] = table["made"].get("build_seconds", 0.0)
    else:
        table = {"format": FORMAT, "made": made, "grid": spec.grid(), "rows": []}
    table["made"] = made
    todo = missing_configs(table)
    say(f"table {path}: {len(table['rows'])} rows done, {len(todo)} to fine-tune on {device_name}")
    if not todo:
        return table

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # From-config shapes share one BPE tokenizer: tokenized once, then read from sweep's cache.
    data = prepare_data(data_spec, ModelConfig(preset=spec.model_sizes[0]), cache)
    if dev.type == "cuda":
        _warm_up(spec, data, dev)

    for new, (size, batch, lr) in enumerate(todo):
        elapsed = time.perf_counter() - started
        if budget_seconds is not None and elapsed > budget_seconds:
            say(f"budget of {budget_seconds:g} s spent: stopping; run again to go on")
            break
        if max_new is not None and new >= max_new:
            break
        say(f"fine-tune {size} batch {batch} lr {lr:g} for {spec.epochs} epochs")

        def progress(m: Any, size: str = size) -> bool:
            say(
                f"  {size} epoch {m.epoch}: val_loss {m.val_loss:.4f} acc {m.val_accuracy:.3f}"
                f" {m.seconds:.1f} s"
            )
            return False

        params = TrialParams(
            learning_rate=lr,
            batch_size=batch,
            epochs=spec.epochs,
            model_size=size,
            seed=spec.seed,
            weight_decay=spec.weight_decay,
            warmup_ratio=spec.warmup_ratio,
        )
        result = fine_tune(
            params, data, ModelConfig(preset=size), device=str(dev), on_epoch=progress
        )
        if result.end_reason == "interrupted":
            # fine_tune turns Ctrl-C into a short result: it must not become a row.
            raise KeyboardInterrupt
        row: dict[str, Any] = {
            "model_size": size,
            "batch_size": batch,
            "learning_rate": lr,
            "end_reason": result.end_reason,
            "n_params": result.n_params,
            "device": result.device,
            "seconds": round(result.train_seconds, 4),
            "samples_per_s": round(result.samples_per_s, 1),
            "epochs": [
                {
                    "epoch": m.epoch,
                    "train_loss": m.train_loss,
                    "val_loss": m.val_loss,
                    "val_accuracy": m.val_accuracy,
                    "seconds": round(m.seconds, 4),
                }
                for m in result.epochs
            ],
        }
        table["rows"].append(row)
        made["updated"] = _now()
        made["build_seconds"] = round(table["made"]["build_seconds"] + result.train_seconds, 2)
        write_table(Path(path), table)
    return table


def _check_resumable(
    table: dict[str, Any], made: dict[str, Any], spec: TableSpec, path: Path
) -> None:
    """TableError unless `table` was made from the same data, settings and device, on a grid
    that `spec`'s grid contains: model and batch sizes may be added to a table, nothing else."""
    old = table["made"]
    for key in (*spec.settings(), "content_hash", "device"):
        if old.get(key) != made[key]:
            raise TableError(
                f"{path} was made with {key} {old.get(key)!r}, this build has {made[key]!r}:"
                " its rows cannot be mixed with new ones; give another --build-table path"
            )
    was, grid = table["grid"], spec.grid()
    same = all(was[k] == grid[k] for k in ("learning_rate", "learning_rate_range", "epochs"))
    grows = all(set(was[k]) <= set(grid[k]) for k in ("model_size", "batch_size"))
    if not (same and grows):
        raise TableError(
            f"{path} holds another grid ({json.dumps(was)}); give another --build-table path"
        )


def _warm_up(spec: TableSpec, data: Any, dev: Any) -> None:
    """A short, untimed fine-tune per model and batch size before the table's timings start.

    CUDA loads kernels lazily and picks matmul algorithms per shape on first use; without this
    the first configuration of each shape would pay for it in its epoch seconds.
    """
    from sweep.config import ModelConfig
    from sweep.training import TrialParams, fine_tune

    head = _head(data, 512)
    for size in spec.model_sizes:
        for batch in spec.batch_sizes:
            fine_tune(
                TrialParams(learning_rate=1e-3, batch_size=batch, epochs=1, model_size=size),
                head,
                ModelConfig(preset=size),
                device=str(dev),
            )
