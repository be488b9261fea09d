"""The replay side of benchmarks/search.py: seeded Optuna sweeps against a table of fine-tunes.

Each side is a real Optuna study (in memory) with the sampler and pruner that sweep itself builds
from a study config (sweep.search.make_sampler / make_pruner) and sweep's own parameter
suggestion (sweep.search.suggest_params). Only the fine-tune is replaced: a trial with `epochs=k`
reads the first k epochs of its configuration's row, reporting each epoch's validation loss and
asking the pruner after it exactly as sweep.runner.Objective does.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any

from _search_table import TableError, missing_configs, snap_lr

# default: what sweep builds when a study names no sampler or pruner (TPE + Hyperband);
# random: plain random search without pruning, the baseline; random_hyperband: random sampling
# with sweep's default pruner (Hyperband as its paper runs it), shown beside the default;
# random_rerun: the baseline again with a seed of its own, how close random search comes to its
# own best when it is simply run again (the noise floor of time_to_target_ratio).
SIDES = ("default", "random", "random_hyperband", "random_rerun")
# Sampler seeds of one replay seed's sides are seed * _SEED_STRIDE + the side's index.
_SEED_STRIDE = 10


@dataclass(frozen=True)
class TrialRecord:
    """One replayed trial: the grid point it ran, how it ended and what it cost."""

    number: int
    model_size: str
    batch_size: int
    learning_rate: float  # snapped to the grid
    epochs: int  # as sampled
    epochs_run: int
    state: str  # "complete" | "pruned" | "fail"
    value: float | None  # best val_loss of the epochs run; None unless complete
    val_accuracy: float | None  # accuracy at that epoch
    seconds: float  # sum of the epoch seconds this trial ran
    cumulative_seconds: float  # of the whole side up to and with this trial


@dataclass(frozen=True)
class SideRun:
    """All trials of one side for one seed, in the order they ran (one worker)."""

    side: str
    seed: int
    trials: tuple[TrialRecord, ...]

    @property
    def total_seconds(self) -> float:
        """Training seconds the side spent in all."""
        return self.trials[-1].cumulative_seconds if self.trials else 0.0

    def best(self) -> TrialRecord | None:
        """The best complete trial (what `sweep best` would pick), the earliest of ties."""
        done = [t for t in self.trials if t.state == "complete"]
        return min(done, key=lambda t: (t.value, t.number)) if done else None

    def best_so_far(self) -> list[tuple[float, float]]:
        """(cumulative seconds, best value) at every trial end where the best value improved."""
        points: list[tuple[float, float]] = []
        for t in self.trials:
            if t.state == "complete" and (not points or t.value < points[-1][1]):
                points.append((t.cumulative_seconds, t.value))
        return points


def side_seed(seed: int, side: str) -> int:
    """The sampler seed of `side` in replay `seed`: every side and seed draws its own numbers.

    Sides that shared a seed would share their draws: TPE's first trials come from a
    RandomSampler seeded like the baseline's, so the default would run random search's first
    ten trials again and find whatever random search found among them at a discount; random
    sampling with Hyperband would run all of random search's trials again, pruned. Either
    measures a correlation, not a search.
    """
    return seed * _SEED_STRIDE + SIDES.index(side)


def study_config(
    table: dict[str, Any],
    side: str,
    seed: int,
    lr_values: bool = False,
    pruner: str | None = None,
) -> Any:
    """The StudyConfig of the table's search space for one of SIDES.

    For "default" the config leaves `sampler` and `pruner` out, so whatever sweep builds for a
    study file that does not name them is what is measured; "random_hyperband" names only
    `sampler: random`. The config's seed is `side_seed(seed, side)`. With `lr_values` the
    learning rate is searched among the table's grid values instead of over its range, which
    makes the space finite (see sweep.search._distinct). `pruner` names the pruner of the
    sides that prune ("default", "random_hyperband") instead of sweep's default.
    """
    from sweep.config import StudyConfig

    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    grid, made = table["grid"], table["made"]
    low, high = grid["learning_rate_range"]
    data: dict[str, Any] = {
        "name": "search-benchmark",
        # Never loaded: the table stands in for the data. demo keeps the config valid offline.
        "data": {"demo": True},
        "models": {size: {"preset": size} for size in grid["model_size"]},
        "parameters": {
            "learning_rate": {"values": list(grid["learning_rate"])}
            if lr_values
            else {"min": low, "max": high, "log": True},
            "batch_size": {"values": list(grid["batch_size"])},
            "epochs": {"min": 1, "max": grid["epochs"]},
            "model_size": {"values": list(grid["model_size"])},
            "weight_decay": made["weight_decay"],
            "warmup_ratio": made["warmup_ratio"],
        },
        "metric": {"name": "val_loss", "goal": "minimize"},
        "seed": side_seed(seed, side),
    }
    if side in ("random", "random_rerun"):
        data.update(sampler="random", pruner="none")
        return StudyConfig.model_validate(data)
    if side == "random_hyperband":
        data.update(sampler="random")
    if pruner is not None:
        data.update(pruner=pruner)
    return StudyConfig.model_validate(data)


def check_complete(table: dict[str, Any], where: str) -> None:
    """TableError unless every grid point has a row (the replay cannot invent one)."""
    missing = missing_configs(table)
    if missing:
        total = len(missing) + len(table["rows"])
        command = " ".join(table["made"].get("command") or []) or "its build command"
        raise TableError(
            f"the table {where} has {total - len(missing)} of {total} configurations (a build"
            f" that was stopped); run again, it goes on where it stopped: {command}"
        )


def replay(
    table: dict[str, Any],
    side: str,
    seed: int,
    n_trials: int,
    lr_values: bool = False,
    pruner: str | None = None,
) -> SideRun:
    """Run one seeded sweep of `n_trials` trials against `table`; deterministic for a seed.

    A trial suggests its parameters through sweep.search.suggest_params; its learning rate is
    snapped to the grid (`snap_lr`). It then reports the validation loss of epochs 1..k of its
    row and, before its last epoch only, asks the pruner, as sweep's objective does (after the
    last epoch there is no compute left to save). Its cost is the sum of the seconds of the
    epochs it ran. A row that ended in nan-loss before epoch k makes the trial FAIL, costing
    what its fine-tune cost.
    """
    import optuna
    from optuna.trial import TrialState

    from sweep.search import make_pruner, make_sampler, suggest_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = study_config(table, side, seed, lr_values, pruner)
    with warnings.catch_warnings():
        # multivariate / constant_liar are "experimental" to Optuna: a warning per study here.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = make_sampler(config)
    study = optuna.create_study(
        # The name fixes Hyperband's bracket of each trial (a hash of name and number): a
        # random name, Optuna's default, would make the replay differ from run to run.
        study_name=f"search-benchmark-{side}-seed{seed}",
        direction="minimize",
        sampler=sampler,
        pruner=make_pruner(config),
    )
    rows = {(r["model_size"], r["batch_size"], r["learning_rate"]): r for r in table["rows"]}
    records: list[TrialRecord] = []
    total = 0.0
    for _ in range(n_trials):
        trial = study.ask()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            params = suggest_params(trial, config)
        lr = snap_lr(params.learning_rate, table["grid"])
        row = rows[(params.model_size, params.batch_size, lr)]
        epochs = row["epochs"]
        seconds, state, ran = 0.0, "complete", 0
        best: dict[str, Any] | None = None
        for metrics in epochs[: params.epochs]:
            ran += 1
            seconds += metrics["seconds"]
            if best is None or metrics["val_loss"] < best["val_loss"]:
                best = metrics
            trial.report(metrics["val_loss"], metrics["epoch"])
            if metrics["epoch"] < params.epochs and trial.should_prune():
                state = "pruned"
                break
        if state == "complete" and ran < params.epochs:
            # The real run hit nan-loss in epoch ran + 1: it cost the rest of its seconds.
            state = "fail"
            seconds += max(0.0, row["seconds"] - sum(m["seconds"] for m in epochs))
        total += seconds
        if state == "complete":
            assert best is not None
            study.tell(trial, best["val_loss"])
        else:
            study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        records.append(
            TrialRecord(
                number=trial.number,
                model_size=params.model_size,
                batch_size=params.batch_size,
                learning_rate=lr,
                epochs=params.epochs,
                epochs_run=ran,
                state=state,
                value=best["val_loss"] if state == "complete" and best else None,
                val_accuracy=best["val_accuracy"] if state == "complete" and best else None,
                seconds=seconds,
                cumulative_seconds=total,
            )
        )
    return SideRun(side, seed, tuple(records))


def time_to_target(run: SideRun, target: float) -> float | None:
    """Cumulative seconds at the end of the first complete trial of `run` with value <= target;
    None if no trial of the run got there."""
    for t in run.trials:
        if t.state == "complete" and t.value is not None and t.value <= target:
            return t.cumulative_seconds
    return None


def compare(default: SideRun, random: SideRun) -> dict[str, Any]:
    """One seed's figures: the target (random search's final best), when the default reached
    it, and time_to_target_ratio = that time / random search's total seconds (None: never)."""
    best_random = random.best()
    if best_random is None or best_random.value is None:
        raise TableError(f"seed {random.seed}: random search completed no trial")
    target = best_random.value
    reached = time_to_target(default, target)
    best_default = default.best()
    return {
        "seed": random.seed,
        "target": target,
        "default_seconds_to_target": reached,
        "random_seconds": random.total_seconds,
        "default_seconds": default.total_seconds,
        "time_to_target_ratio": None if reached is None else reached / random.total_seconds,
        # Unreached: the default would need more than all it spent, so this bounds the ratio.
        "ratio_lower_bound": (reached or default.total_seconds) / random.total_seconds,
        "default_best": None if best_default is None else best_default.value,
        "random_best": target,
        "default_pruned": sum(t.state == "pruned" for t in default.trials),
        "default_best_so_far": [[round(s, 2), v] for s, v in default.best_so_far()],
        "random_best_so_far": [[round(s, 2), v] for s, v in random.best_so_far()],
    }


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages over seeds. time_to_target_ratio is the mean of the seeds' ratios, and None when
    any seed's default never reached its target (then see the lower bound and seeds_reached)."""
    ratios = [s["time_to_target_ratio"] for s in per_seed]
    reached = [r for r in ratios if r is not None]

    def mean(key: str) -> float | None:
        values = [s[key] for s in per_seed if s[key] is not None]
        return statistics.fmean(values) if values else None

    return {
        "time_to_target_ratio": statistics.fmean(ratios) if len(reached) == len(ratios) else None,
        "time_to_target_ratio_lower_bound": mean("ratio_lower_bound"),
        "seeds_reached": f"{len(reached)}/{len(ratios)}",
        "time_to_target_ratio_median": statistics.median(reached) if reached else None,
        "default_final_best": mean("default_best"),
        "random_final_best": mean("random_best"),
        "default_seconds": mean("default_seconds"),
        "random_seconds": mean("random_seconds"),
        "compute_ratio": mean("default_seconds") / mean("random_seconds")
        if mean("random_seconds")
        else math.nan,
    }


def table_best(table: dict[str, Any]) -> dict[str, Any]:
    """The best grid point over all its epochs prefixes: what an exhaustive search would find."""
    best = min(
        ((r, m) for r in table["rows"] for m in r["epochs"]), key=lambda rm: rm[1]["val_loss"]
    )
    row, metrics = best
    return {
        "val_loss": metrics["val_loss"],
        "val_accuracy": metrics["val_accuracy"],
        "model_size": row["model_size"],
        "batch_size": row["batch_size"],
        "learning_rate": row["learning_rate"],
        "epochs": metrics["epoch"],
        "grid_seconds": sum(m["seconds"] for r in table["rows"] for m in r["epochs"]),
    }
