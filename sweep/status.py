"""What a study holds, as plain rows: one per trial, the best trial, counts by state, overhead.

Rows are computed first (plain dicts, JSON-able: `sweep status --json` prints them as they are)
and drawn second (`render_status`, a Rich table). Needs only Optuna: never imports torch.

The names of the user attributes that `sweep run` writes live here too, so the writer (the
objective and the CLI) and the readers (status, best, reports) agree on them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.pareto import pareto_front_trials

# Study user attributes written by `sweep run`.
ATTR_CONFIG = "config"  # the resolved study config (StudyConfig.resolved())
ATTR_SIGNATURE = "space_signature"  # space_signature(config), compared when a study is continued
ATTR_METRIC = "metric"  # "val_loss" | "val_accuracy"
ATTR_DATA_HASH = "data_content_hash"  # TextData.content_hash of the data the trials trained on
ATTR_DATA_SOURCE = "data_source"
ATTR_SWEEP_VERSION = "sweep_version"
ATTR_LABEL_NAMES = "label_names"  # the data's label names, by id
ATTR_DATA_DROPPED = "data_dropped_empty"  # rows dropped because their text was empty
SESSION_PREFIX = "session:"  # one per `sweep run` process: {"started", "wall_seconds", ...}

# End reasons of trials that did not end because of their own parameters: they do not count
# towards --trials (their slot is run again), see `counts_towards_budget`.
NOT_COUNTED_REASONS = frozenset({"interrupted", "orphan"})
# A trial stopped by the machine, not by its parameters (a full disk, a database that stayed
# away): always queued again, never counted.
END_INFRASTRUCTURE = "infrastructure"
# Trials whose worker was lost or preempted: not counted when a retry was queued (the retry
# counts); counted when retries ran out (something in the trial may be what kills its workers).
RETRIED_REASONS = frozenset({"worker-lost", "preempted", END_INFRASTRUCTURE})


def counts_towards_budget(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards `sweep run --trials N`.

    COMPLETE and PRUNED trials count, and so do FAILed trials that failed because of their
    parameters (nan-loss, an error inside the fine-tune). A trial interrupted by Ctrl-C, or one
    whose worker was lost or preempted and that was queued again, does not: it says nothing
    about its parameters, so its slot is run again.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state == TrialState.FAIL:
        reason = trial.user_attrs.get("end_reason")
        if reason in RETRIED_REASONS:
            return not trial.user_attrs.get("retried", False)
        return reason is not None and reason not in NOT_COUNTED_REASONS
    return False


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def end_reason(trial: FrozenTrial) -> str:
    """Why the trial ended, in a few words ("complete", "pruned at epoch 2", "error: ...")."""
    attrs = trial.user_attrs
    reason = attrs.get("end_reason")
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "queued"
    if trial.state == TrialState.PRUNED:
        epoch = attrs.get("pruned_at_epoch")
        return f"pruned at epoch {epoch}" if epoch is not None else "pruned"
    if trial.state == TrialState.FAIL:
        if reason is None:
            # Failed by an older heartbeat check (its worker died) or by something outside sweep.
            return "worker-lost"
        error = attrs.get("error")
        if reason in RETRIED_REASONS:
            text = f"{reason}: {error}" if error else str(reason)
            return f"{text}, queued again" if attrs.get("retried") else text
        return f"{reason}: {error}" if error else str(reason)
    return str(reason or "complete")


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a JSON-able dict (the row of `sweep status`)."""
    attrs = trial.user_attrs
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    values = [_finite(v) for v in trial.values] if trial.values else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        # The validation metric (the first objective); `values` has every objective's value
        # (metric and cost in a multi-objective study), None where the trial has none.
        "value": values[0] if values else None,
        "values": values,
        "best_epoch": attrs.get("best_epoch"),
        "epochs_run": attrs.get("epochs_run"),
        "seconds": seconds,
        "train_seconds": _finite(attrs.get("train_seconds")),
        "val_accuracy": _finite(attrs.get("val_accuracy")),
        "end_reason": end_reason(trial),
        "samples_per_s": _finite(attrs.get("samples_per_s")),
        "peak_memory_mb": _finite(attrs.get("peak_memory_mb")),
        "device": attrs.get("device"),
        "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
        # Which worker ran it (host:pid and CUDA_VISIBLE_DEVICES), and the retry chain.
        "worker": attrs.get("worker"),
        "gpu": attrs.get("gpu"),
        "retry_of": attrs.get("retry_of"),
        "worker_lost": trial.state == TrialState.FAIL
        and attrs.get("end_reason", "worker-lost") == "worker-lost",
    }


def overhead(study_user_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Sweep overhead: wall time of the `sweep run` sessions minus the time spent in fine-tunes.

    Each session (one `sweep run` process) stores its wall time (from the study being ready to
    the last trial being told, so process start-up and data preparation are excluded), the sum
    of its trials' time inside `run_trial`, the time it waited for other workers' trials to
    end the budget, and its trial count. Overhead is what the sweep machinery (sampling,
    pruning, storage writes, progress display) adds on top.
    """
    sessions = [v for k, v in study_user_attrs.items() if k.startswith(SESSION_PREFIX)]
    wall = sum(float(s.get("wall_seconds", 0.0)) for s in sessions)
    train = sum(float(s.get("train_seconds", 0.0)) for s in sessions)
    # Waiting while other workers ran the last trials of the budget is not sweep's overhead.
    wait = sum(float(s.get("wait_seconds", 0.0)) for s in sessions)
    trials = sum(int(s.get("trials", 0)) for s in sessions)
    total = max(wall - train - wait, 0.0)
    return {
        "sessions": len(sessions),
        "trials": trials,
        "wall_seconds": wall,
        "train_seconds": train,
        "wait_seconds": wait,
        "overhead_seconds": total,
        "per_trial_seconds": total / trials if trials else None,
        "percent_of_wall": 100.0 * total / wall if wall > 0 else None,
    }


def cost_of(seconds: float, gpus: Any) -> float:
    """Compute of `seconds` of training on `gpus` GPUs: seconds x max(1, GPUs).

    A trial trained on the CPU counts as one device, so its cost is its training seconds.
    The one formula behind `sweep best --budget`, the report and the cost objective of a
    multi-objective study (sweep.objective returns it), so they cannot disagree.
    """
    n_gpus = int(gpus) if isinstance(gpus, int | float) and math.isfinite(gpus) else 0
    return float(seconds) * max(1, n_gpus)


def trial_cost(trial: FrozenTrial) -> float | None:
    """A trial's compute (`cost_of` its recorded train_seconds and gpus); None if it recorded
    no training time."""
    seconds = _finite(trial.user_attrs.get("train_seconds"))
    if seconds is None:
        return None
    return cost_of(seconds, trial.user_attrs.get("gpus"))


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether the study has a second objective (sweep's is always cost: values[1])."""
    return len(study.directions) > 1


def metric_of(trial: FrozenTrial) -> float | None:
    """The trial's validation metric (values[0], also of a multi-objective study), None when
    it has none or it is not finite."""
    if trial.state != TrialState.COMPLETE or not trial.values:
        return None
    return _finite(trial.values[0])


def _direction_name(direction: Any) -> str:
    return str(getattr(direction, "name", direction)).lower()


def best_trial(study: optuna.Study, budget: float | None = None) -> FrozenTrial | None:
    """The best COMPLETE trial, or None if there is none yet.

    With `budget` (seconds): the best of those whose cost (`trial_cost`) is at most that; of
    equally good ones the cheapest. In a multi-objective study (metric and cost) the best is
    the trial with the best metric, the cheapest of equals: a trial on the Pareto front (none
    is both as good and cheaper), the front's most accurate end; with `budget`, the most
    accurate end of the front of the trials that fit.
    """
    multi = is_multi_objective(study)
    if budget is None and not multi:
        try:
            return study.best_trial
        except ValueError:
            return None
    limit = math.inf if budget is None else budget
    fits = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        value = metric_of(t)
        # A multi-objective study's cost is its second objective (the same number as
        # trial_cost: the objective computes it with cost_of from what it records).
        cost = _finite(t.values[1]) if multi and len(t.values) > 1 else trial_cost(t)
        if value is None or (budget is not None and (cost is None or cost > limit)):
            continue
        fits.append((value, math.inf if cost is None else cost, t))
    if not fits:
        return None
    sign = 1.0 if _direction_name(study.directions[0]) == "minimize" else -1.0
    return min(fits, key=lambda f: (sign * f[0], f[1], f[2].number))[2]


def objective_names(directions: int, user_attrs: Mapping[str, Any]) -> list[str]:
    """What each objective of a study is: ["val_loss"], or ["val_loss", "cost"] for a sweep
    study whose metric lists cost ("value" where a study not made by sweep does not say)."""
    names = [str(user_attrs.get(ATTR_METRIC) or "value")]
    config = user_attrs.get(ATTR_CONFIG)
    metric = config.get("metric") if isinstance(config, Mapping) else None
    listed = isinstance(metric, list) and any(
        isinstance(m, Mapping) and m.get("name") == "cost" for m in metric
    )
    for index in range(1, directions):
        names.append("cost" if index == 1 and listed else f"value {index}")
    return names


def study_status(study: optuna.Study) -> dict[str, Any]:
    """Everything `sweep status` shows, as plain data.

    A multi-objective study (metric and cost) also says which trials are on its Pareto front:
    `pareto_front` (trial numbers) and `pareto` on each trial row (None in a single-objective
    study, which has no front).
    """
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    attrs = study.user_attrs
    counts = Counter(t.state.name for t in trials)
    directions = [_direction_name(d) for d in study.directions]
    front: list[int] | None = None
    if len(directions) > 1:
        front = [t.number for t in pareto_front_trials(trials, study.directions)]
    on_front = set(front or ())
    rows = []
    for t in trials:
        row = trial_row(t)
        row["pareto"] = (t.number in on_front) if front is not None else None
        rows.append(row)
    return {
        "study": study.study_name,
        "direction": directions[0],
        "directions": directions,
        "objectives": objective_names(len(directions), attrs),
        "metric": attrs.get(ATTR_METRIC),
        "trials": rows,
        "best": trial_row(best) if best is not None else None,
        "pareto_front": front,
        "counts": {state.name: counts.get(state.name, 0) for state in TrialState},
        "counted_towards_trials": sum(1 for t in trials if counts_towards_budget(t)),
        "data_dropped_empty": attrs.get(ATTR_DATA_DROPPED),
        "overhead": overhead(attrs),
    }


def studies_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """One row per study of the storage: name, trials, best value, direction."""
    rows = []
    for frozen in storage.get_all_studies():
        trials = storage.get_all_trials(frozen._study_id, deepcopy=False)
        direction = frozen.directions[0]
        # The metric: the first objective, also of a multi-objective study.
        complete = [v for t in trials if (v := metric_of(t)) is not None]
        best = None
        if complete:
            best = min(complete) if direction.name == "MINIMIZE" else max(complete)
        rows.append(
            {
                "name": frozen.study_name,
                "trials": len(trials),
                "complete": sum(1 for t in trials if t.state == TrialState.COMPLETE),
                "best_value": best,
                "direction": direction.name.lower(),
                "metric": frozen.user_attrs.get(ATTR_METRIC),
                "objectives": objective_names(len(frozen.directions), frozen.user_attrs),
            }
        )
    return rows


# -- formatting ------------------------------------------------------------------------------


def fmt_number(value: Any) -> str:
    """A compact rendering: 4 significant digits for floats, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


_SHORT = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "epochs": "epochs",
    "model_size": "size",
    "weight_decay": "wd",
    "warmup_ratio": "warmup",
}


def fmt_params(params: Mapping[str, Any]) -> str:
    """Parameters as `lr=3.1e-04 batch=32 ...`, in a stable order."""
    order = list(_SHORT)
    keys = sorted(params, key=lambda k: (order.index(k) if k in order else len(order), k))
    return " ".join(f"{_SHORT.get(k, k)}={fmt_number(params[k])}" for k in keys)


def fmt_epochs(row: Mapping[str, Any]) -> str:
    """`best/run` epochs, e.g. `2/3`."""
    if row.get("best_epoch") is None and row.get("epochs_run") is None:
        return "-"
    return f"{fmt_number(row.get('best_epoch'))}/{fmt_number(row.get('epochs_run'))}"


def fmt_worker(row: Mapping[str, Any]) -> str:
    """`host:pid`, plus the GPU it saw (`gpu 3`), or "-" for a trial no worker has run."""
    worker = row.get("worker")
    if not worker:
        return "-"
    return f"{worker} gpu {row['gpu']}" if row.get("gpu") not in (None, "") else str(worker)


def render_status(status: Mapping[str, Any], console: Any) -> None:
    """Draw the status rows on a Rich console: trials table, best trial, counts, overhead.

    A multi-objective study gets a column per objective, a `pareto` column marking the trials
    on the Pareto front, and a line listing them.
    """
    from rich.table import Table
    from rich.text import Text

    metric = status.get("metric") or "value"
    objectives = status.get("objectives") or [metric]
    directions = status.get("directions") or [status["direction"]]
    multi = status.get("pareto_front") is not None
    what = "; ".join(f"{n}, {d}" for n, d in zip(objectives, directions, strict=False))
    # Every value from the database is Text, never markup: a study name or an error message
    # holding "[/x]" or "[bold]" is shown as it is.
    table = Table(title=Text(f"study {status['study']} ({what})"))
    headers = [("#", "right"), ("state", "left"), ("parameters", "left"), (metric, "right")]
    if multi:
        headers += [(name, "right") for name in objectives[1:]] + [("pareto", "center")]
    headers += [
        ("epochs best/run", "right"),
        ("seconds", "right"),
        ("worker", "left"),
        ("end", "left"),
    ]
    for header, justify in headers:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    best_number = status["best"]["number"] if status["best"] else None
    for row in status["trials"]:
        style = "bold green" if row["number"] == best_number else None
        if row.get("worker_lost"):
            style = "red"
        end = row["end_reason"]
        if row.get("retry_of") is not None:
            end = f"{end} (retry of #{row['retry_of']})"
        cells = [str(row["number"]), row["state"], fmt_params(row["params"])]
        cells.append(fmt_number(row["value"]))
        if multi:
            values = row.get("values") or []
            cells += [
                fmt_number(values[i] if i < len(values) else None)
                for i in range(1, len(objectives))
            ]
            cells.append("*" if row.get("pareto") else "")
        cells += [fmt_epochs(row), fmt_number(row["seconds"]), fmt_worker(row), end]
        table.add_row(*(Text(cell) for cell in cells), style=style)
    console.print(table)
    console.print(best_line(status["best"], metric), markup=False)
    if multi:
        console.print(pareto_line(status["pareto_front"]), markup=False)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in status["counts"].items() if n)
    console.print(f"trials: {counts or 'none'}", markup=False)
    if status.get("data_dropped_empty"):
        console.print(f"data: {dropped_text(status['data_dropped_empty'])}", markup=False)
    console.print(overhead_line(status["overhead"]), markup=False)


def dropped_text(count: int) -> str:
    """`12 rows with empty text were dropped (not trained or validated on)`."""
    rows = "1 row" if count == 1 else f"{count} rows"
    return f"{rows} with empty text {'was' if count == 1 else 'were'} dropped (not used)"


def pareto_line(front: Sequence[int]) -> str:
    """`Pareto front: #3, #7, #9` (trials no other trial beats on both metric and cost)."""
    if not front:
        return "Pareto front: no complete trial yet"
    return "Pareto front: " + ", ".join(f"#{n}" for n in front)


def best_line(best: Mapping[str, Any] | None, metric: str) -> str:
    """`best: trial 3, val_loss 0.41 (lr=...)` or a note that there is none."""
    if best is None:
        return "best: no complete trial yet"
    values = best.get("values") or []
    cost = f", cost {fmt_number(values[1])} s" if len(values) > 1 else ""
    return (
        f"best: trial {best['number']}, {metric} {fmt_number(best['value'])}{cost} "
        f"({fmt_params(best['params'])})"
    )


def overhead_line(info: Mapping[str, Any]) -> str:
    """The overhead summary line of `sweep status`."""
    if not info["trials"]:
        return "sweep overhead: no timed session yet"
    return (
        f"sweep overhead: {info['overhead_seconds']:.2f} s over {info['trials']} trials "
        f"({fmt_number(info['per_trial_seconds'])} s per trial, "
        f"{fmt_number(info['percent_of_wall'])} % of {info['wall_seconds']:.1f} s wall time "
        f"in {info['sessions']} session(s))"
    )
