"""What a study holds, as plain rows: one per trial, the best trial, counts by state, overhead.

Rows are computed first (plain dicts, JSON-able: `sweep status --json` prints them as they are)
and drawn second (by the CLI, as a Rich table; by the report, as HTML). Needs only Optuna:
never imports torch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.study.accounting import (
    RETRIED_REASONS,
    counts_towards_budget,
    finite,
    overhead,
    trial_cost,
)
from sweep.study.attrs import CONFIRM_SUFFIX, EndReason, StudyKey, TrialKey
from sweep.study.pareto import direction_name, pareto_front_trials

__all__ = [
    "best_trial",
    "companion_name",
    "end_reason_text",
    "is_companion",
    "is_multi_objective",
    "metric_of",
    "objective_names",
    "studies_rows",
    "study_status",
    "trial_row",
]


def end_reason_text(trial: FrozenTrial) -> str:
    """Why the trial ended, in a few words ("complete", "pruned at epoch 2", "error: ...")."""
    attrs = trial.user_attrs
    reason = attrs.get(TrialKey.END_REASON)
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "queued"
    if trial.state == TrialState.PRUNED:
        epoch = attrs.get(TrialKey.PRUNED_AT_EPOCH)
        return f"pruned at epoch {epoch}" if epoch is not None else "pruned"
    if trial.state == TrialState.FAIL:
        if reason is None:
            # Failed by an older heartbeat check (its worker died) or by something outside sweep.
            return EndReason.WORKER_LOST
        error = attrs.get(TrialKey.ERROR)
        if reason in RETRIED_REASONS:
            text = f"{reason}: {error}" if error else str(reason)
            return f"{text}, queued again" if attrs.get(TrialKey.RETRIED) else text
        return f"{reason}: {error}" if error else str(reason)
    return str(reason or EndReason.COMPLETE)


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a JSON-able dict (the row of `sweep status`)."""
    attrs = trial.user_attrs
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    values = [finite(v) for v in trial.values] if trial.values else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        # The validation metric (the first objective); `values` has every objective's value
        # (metric and cost in a multi-objective study), None where the trial has none.
        "value": values[0] if values else None,
        "values": values,
        "best_epoch": attrs.get(TrialKey.BEST_EPOCH),
        "epochs_run": attrs.get(TrialKey.EPOCHS_RUN),
        "seconds": seconds,
        TrialKey.TRAIN_SECONDS: finite(attrs.get(TrialKey.TRAIN_SECONDS)),
        "val_accuracy": finite(attrs.get(TrialKey.VAL_ACCURACY)),
        TrialKey.END_REASON: end_reason_text(trial),
        "samples_per_s": finite(attrs.get(TrialKey.SAMPLES_PER_S)),
        "peak_memory_mb": finite(attrs.get(TrialKey.PEAK_MEMORY_MB)),
        "device": attrs.get(TrialKey.DEVICE),
        "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
        # Which worker ran it (host:pid and CUDA_VISIBLE_DEVICES), and the retry chain.
        "worker": attrs.get(TrialKey.WORKER),
        "gpu": attrs.get(TrialKey.GPU),
        "retry_of": attrs.get(TrialKey.RETRY_OF),
        "worker_lost": trial.state == TrialState.FAIL
        and attrs.get(TrialKey.END_REASON, EndReason.WORKER_LOST) == EndReason.WORKER_LOST,
    }


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether the study has a second objective (sweep's is always cost: values[1])."""
    return len(study.directions) > 1


def metric_of(trial: FrozenTrial) -> float | None:
    """The trial's validation metric (values[0], also of a multi-objective study), None when
    it has none or it is not finite."""
    if trial.state != TrialState.COMPLETE or not trial.values:
        return None
    return finite(trial.values[0])


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
        cost = finite(t.values[1]) if multi and len(t.values) > 1 else trial_cost(t)
        if value is None or (budget is not None and (cost is None or cost > limit)):
            continue
        fits.append((value, math.inf if cost is None else cost, t))
    if not fits:
        return None
    sign = 1.0 if direction_name(study.directions[0]) == "minimize" else -1.0
    return min(fits, key=lambda f: (sign * f[0], f[1], f[2].number))[2]


def objective_names(directions: int, user_attrs: Mapping[str, Any]) -> list[str]:
    """What each objective of a study is: ["val_loss"], or ["val_loss", "cost"] for a sweep
    study whose metric lists cost ("value" where a study not made by sweep does not say)."""
    names = [str(user_attrs.get(StudyKey.METRIC) or "value")]
    config = user_attrs.get(StudyKey.CONFIG)
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
    directions = [direction_name(d) for d in study.directions]
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
        "metric": attrs.get(StudyKey.METRIC),
        "trials": rows,
        "best": trial_row(best) if best is not None else None,
        "pareto_front": front,
        "counts": {state.name: counts.get(state.name, 0) for state in TrialState},
        "counted_towards_trials": sum(1 for t in trials if counts_towards_budget(t)),
        "data_dropped_empty": attrs.get(StudyKey.DATA_DROPPED),
        "overhead": overhead(attrs),
    }


def studies_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """One row per study of the storage: name, trials, best value, direction."""
    rows = []
    for frozen in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(frozen.study_name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
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
                "metric": frozen.user_attrs.get(StudyKey.METRIC),
                "objectives": objective_names(len(frozen.directions), frozen.user_attrs),
            }
        )
    return rows


def companion_name(name: str) -> str:
    """The name of the study that holds NAME's confirmation runs (`sweep confirm`)."""
    return name + CONFIRM_SUFFIX


def is_companion(name: str, names: Sequence[str]) -> bool:
    """Whether study `name` is the confirmation study of another study in `names`."""
    return name.endswith(CONFIRM_SUFFIX) and name.removesuffix(CONFIRM_SUFFIX) in names
