"""The rows behind every figure of `sweep report`, computed from the storage alone.

Everything here is plain data (dataclasses, dicts, lists of numbers and strings): no Plotly, no
HTML. `figures.py` draws these rows and `page.py` lays them out, so the tests can check what a
figure shows (the best-so-far line never gets worse, a pruned curve stops at its pruning epoch,
the Pareto front is non-dominated) without a browser.

Trials are read with one `study.get_trials(deepcopy=False)`; the rest is arithmetic on them.
Needs only Optuna and numpy: never imports torch (nor scikit-learn, see `importances`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.study import (
    StudyKey,
    TrialKey,
    best_trial,
    cost_of,
    end_reason_text,
    finite,
    objective_names,
    pareto_flags,
    trial_row,
)

# The parameters every sweep study has, in the order the figures show them; optional ones
# (weight_decay, warmup_ratio) follow when a study searches them.
MAIN_PARAMS = ("learning_rate", "batch_size", "epochs", "model_size")
OPTIONAL_PARAMS = ("weight_decay", "warmup_ratio")
# Searched on a log scale: binned by their logarithm.
LOG_PARAMS = ("learning_rate", "weight_decay")


COST_GPU = "GPU-seconds"
COST_CPU = "training seconds"


@dataclass(frozen=True)
class StudyRows:
    """One study, as the rows each part of the report is drawn from."""

    name: str
    direction: str  # "minimize" | "maximize"
    metric: str  # "val_loss" | "val_accuracy" (or "value" for a study not made by sweep)
    data: str | None  # where the data came from (the `data_source` study attribute)
    label_names: list[str]
    sweep_version: str | None
    counts: dict[str, int]  # trials by state name, only states that occur
    best: dict[str, Any] | None  # trial_row() of the best trial, plus its cost
    cost_unit: str  # COST_GPU when any trial ran on CUDA, else COST_CPU
    total_cost: float  # sum of the cost of every trial that recorded its training time
    model_sizes: list[str]  # the study's ladder order (config `models:`), then any others
    params: list[str]  # parameter names shown, MAIN_PARAMS first
    trials: list[dict[str, Any]]  # the table: one row per trial (with cost, pareto)
    history: list[dict[str, Any]]  # optimization history: complete trials with best-so-far
    curves: list[dict[str, Any]]  # learning curves: val_loss per epoch, per trial
    parallel: list[dict[str, Any]]  # complete trials: value and parameters
    importances: dict[str, float] | None  # parameter -> share of variance it explains alone
    importance_note: str | None  # why there are no importances
    by_learning_rate: list[dict[str, Any]]  # complete trials: learning rate, value, model size
    cost: list[dict[str, Any]]  # complete trials: cost, value, on the metric-cost Pareto front
    timeline: list[dict[str, Any]]  # started trials: worker, start, end, state
    generated: str = field(default="")  # ISO time the rows were read
    # The study's objectives: [metric], or [metric, "cost"] when cost is a second objective;
    # then `cost` rows' pareto flags are the study's own Pareto front (`pareto_front`).
    objectives: list[str] = field(default_factory=list)
    pareto_front: list[int] | None = None  # front trial numbers of a multi-objective study

    @property
    def multi_objective(self) -> bool:
        """Whether cost is the study's second objective (its Pareto front is the study's)."""
        return self.pareto_front is not None

    @property
    def better(self) -> str:
        """'lower' or 'higher': which way the metric improves."""
        return "lower" if self.direction == "minimize" else "higher"


def _value(trial: FrozenTrial) -> float | None:
    # The metric: the only value, or the first of a multi-objective study (then cost).
    if trial.state != TrialState.COMPLETE or not trial.values:
        return None
    return finite(trial.values[0])


def _epoch_seconds(history: Any) -> float | None:
    if not isinstance(history, list) or not history:
        return None
    seconds = [finite(e.get("seconds")) for e in history if isinstance(e, Mapping)]
    known = [s for s in seconds if s is not None]
    return sum(known) if known else None


def compute_spent(trial: FrozenTrial) -> float | None:
    """Compute a trial spent: training seconds × max(1, GPUs it used), also when it failed.

    `train_seconds` is recorded when the fine-tune returns (complete, pruned, nan-loss); a trial
    that failed or was interrupted mid-way only has its per-epoch seconds, which are summed.
    """
    attrs = trial.user_attrs
    seconds = finite(attrs.get(TrialKey.TRAIN_SECONDS))
    if seconds is None:
        seconds = _epoch_seconds(attrs.get(TrialKey.EPOCH_HISTORY))
    if seconds is None:
        return None
    return cost_of(seconds, attrs.get(TrialKey.GPUS))


def _cost_value(trial: FrozenTrial) -> float | None:
    """The cost objective (values[1]) of a complete multi-objective trial."""
    if trial.values is None or len(trial.values) < 2:
        return None
    return finite(trial.values[1])


def _on_cuda(trial: FrozenTrial) -> bool:
    device = trial.user_attrs.get(TrialKey.DEVICE)
    gpus = trial.user_attrs.get(TrialKey.GPUS)
    return (isinstance(device, str) and device.startswith("cuda")) or (
        isinstance(gpus, int | float) and gpus > 0
    )


def _model_sizes(config: Any, trials: Iterable[FrozenTrial]) -> list[str]:
    """Model sizes in the ladder order of the study file, then any others in sorted order."""
    order: list[str] = []
    if isinstance(config, Mapping) and isinstance(config.get("models"), Mapping):
        order = [str(k) for k in config["models"]]
    seen = {str(t.params["model_size"]) for t in trials if "model_size" in t.params}
    return [m for m in order if m in seen] + sorted(seen - set(order))


def _param_names(trials: Sequence[FrozenTrial]) -> list[str]:
    present: set[str] = set()
    for t in trials:
        present.update(t.params)
    main = [p for p in MAIN_PARAMS + OPTIONAL_PARAMS if p in present]
    return main + sorted(present - set(main))


def optimization_history(trials: Sequence[FrozenTrial], direction: str) -> list[dict[str, Any]]:
    """Complete trials in trial-number order, each with the best value found up to it."""
    better = min if direction == "minimize" else max
    rows: list[dict[str, Any]] = []
    best: float | None = None
    for t in sorted(trials, key=lambda t: t.number):
        value = _value(t)
        if value is None:
            continue
        best = value if best is None else better(best, value)
        rows.append({"number": t.number, "value": value, "best_so_far": best})
    return rows


def learning_curves(
    trials: Sequence[FrozenTrial], metric: str, best_number: int | None
) -> list[dict[str, Any]]:
    """Validation loss per epoch of every trial that finished at least one epoch.

    Read from the trial's `epoch_history`; a trial without one (written by an older sweep or
    by hand) falls back to Optuna's intermediate values when those are the validation loss.
    `stopped_at` is the last epoch: where a pruned or failed trial's curve ends.
    """
    rows = []
    for t in trials:
        epochs: list[int] = []
        losses: list[float | None] = []
        history = t.user_attrs.get(TrialKey.EPOCH_HISTORY)
        if isinstance(history, list) and history:
            for e in history:
                if isinstance(e, Mapping) and e.get("epoch") is not None:
                    epochs.append(int(e["epoch"]))
                    losses.append(finite(e.get("val_loss")))
        elif metric == "val_loss" and t.intermediate_values:
            for epoch, value in sorted(t.intermediate_values.items()):
                epochs.append(int(epoch))
                losses.append(finite(value))
        if not epochs:
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "model_size": t.params.get("model_size"),
                "epochs": epochs,
                "val_loss": losses,
                "stopped_at": epochs[-1],
                "pruned_at_epoch": t.user_attrs.get(TrialKey.PRUNED_AT_EPOCH),
                "is_best": t.number == best_number,
            }
        )
    return rows


def pareto_front(points: Sequence[tuple[float, float]], direction: str) -> list[bool]:
    """For (cost, value) points: whether each is on the Pareto front (lower cost, better value).

    A point is on the front when no other point is at least as cheap and at least as good and
    strictly better in one of the two; of identical points only the first is kept.
    """
    sign = 1.0 if direction == "minimize" else -1.0
    # Cheapest first; at equal cost the best value first, so it shadows the others.
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1], i))
    on_front = [False] * len(points)
    best: float | None = None
    for i in order:
        goodness = sign * points[i][1]
        if best is None or goodness < best:
            on_front[i] = True
            best = goodness
    return on_front


def _groups(values: Sequence[Any], name: str, n_bins: int) -> list[Any]:
    """Group keys for one parameter: its values when there are few, else quantile bins."""
    distinct = set(values)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric or len(distinct) <= n_bins:
        return [str(v) for v in values]
    x = np.asarray(values, dtype=np.float64)
    if name in LOG_PARAMS and (x > 0).all():
        x = np.log10(x)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return [int(i) for i in np.searchsorted(edges, x, side="right")]


def importances(
    complete: Sequence[FrozenTrial], params: Sequence[str]
) -> tuple[dict[str, float] | None, str]:
    """How much of the metric's variance each parameter explains on its own, or (None, why).

    For each parameter, the trials are grouped by its value (learning rates and other
    continuous values in up to 8 quantile bins of equal size, on a log scale where the search
    is) and the share of variance between the groups is measured as epsilon squared: the
    between-group sum of squares minus what that many groups would explain by chance, over
    the total, clipped at 0. It needs only numpy; Optuna's evaluators pull in scikit-learn,
    whose import alone took 2-3 s of the 10 s a 1,000-trial report may take (and its default,
    fANOVA, 28 s to compute).
    """
    if len(complete) < 3:
        return None, "needs at least three complete trials"
    y = np.asarray([_value(t) for t in complete], dtype=np.float64)
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0.0:
        return None, "every complete trial has the same value"
    n = len(y)
    n_bins = max(2, min(8, n // 10))
    shares: dict[str, float] = {}
    for p in params:
        if not all(p in t.params for t in complete):
            continue
        keys = _groups([t.params[p] for t in complete], p, n_bins)
        labels = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        k = len(labels)
        if k < 2 or n - k < 1:
            continue
        index = np.asarray([labels[key] for key in keys])
        counts = np.bincount(index, minlength=k)
        means = np.bincount(index, weights=y, minlength=k) / counts
        between = float((counts * (means - y.mean()) ** 2).sum())
        within = total - between
        shares[p] = max(0.0, (between - (k - 1) * within / (n - k)) / total)
    if not shares:
        return None, "no parameter took more than one value in the complete trials"
    if not any(v > 0 for v in shares.values()):
        return None, "no parameter explains more of the variation than chance (too few trials?)"
    return dict(sorted(shares.items(), key=lambda kv: -kv[1])), ""


def collect(study: optuna.Study) -> StudyRows:
    """Read a study once and compute the rows of every part of its report."""
    trials = study.get_trials(deepcopy=False)
    attrs = study.user_attrs
    directions = [d.name.lower() for d in study.directions]
    direction = directions[0]  # the metric's
    multi = len(directions) > 1
    metric = str(attrs.get(StudyKey.METRIC) or "value")
    best = best_trial(study)
    best_number = best.number if best is not None else None
    params = _param_names(trials)
    labels = attrs.get(StudyKey.LABEL_NAMES)
    costs = _costs(trials, multi)
    complete = [t for t in trials if _value(t) is not None]
    cost_rows, on_front = _cost_rows(complete, costs, direction, multi)
    table = _table(trials, costs, best_number, on_front)
    imp, note = importances(complete, params)
    best_row = None
    if best is not None:
        best_row = {**trial_row(best), "cost": costs.get(best.number, compute_spent(best))}
    counts = Counter(t.state.name for t in trials)
    now = dt.datetime.now()
    return StudyRows(
        name=study.study_name,
        direction=direction,
        metric=metric,
        data=str(attrs[StudyKey.DATA_SOURCE]) if attrs.get(StudyKey.DATA_SOURCE) else None,
        label_names=[str(x) for x in labels] if isinstance(labels, list) else [],
        sweep_version=attrs.get(StudyKey.SWEEP_VERSION),
        counts={s.name: counts[s.name] for s in TrialState if counts.get(s.name)},
        best=best_row,
        cost_unit=COST_GPU if any(_on_cuda(t) for t in trials) else COST_CPU,
        total_cost=sum(c for c in costs.values() if c is not None),
        model_sizes=_model_sizes(attrs.get(StudyKey.CONFIG), trials),
        params=params,
        trials=table,
        history=optimization_history(trials, direction),
        curves=learning_curves(trials, metric, best_number),
        parallel=[{"number": t.number, "value": _value(t), **dict(t.params)} for t in complete],
        importances=imp,
        importance_note=note or None,
        by_learning_rate=_by_learning_rate(complete),
        cost=cost_rows,
        timeline=_timeline(trials, now),
        generated=now.isoformat(timespec="seconds"),
        objectives=objective_names(len(directions), attrs),
        pareto_front=sorted(on_front) if multi else None,
    )


def _costs(trials: Sequence[FrozenTrial], multi: bool) -> dict[int, float | None]:
    """Each trial's cost: the cost objective itself in a multi-objective study (the same number,
    computed by the objective with cost_of), else the compute it spent."""
    costs = {t.number: compute_spent(t) for t in trials}
    if multi:
        for t in trials:
            value = _cost_value(t) if _value(t) is not None else None
            if value is not None:
                costs[t.number] = value
    return costs


def _table(
    trials: Sequence[FrozenTrial],
    costs: Mapping[int, float | None],
    best_number: int | None,
    on_front: set[int],
) -> list[dict[str, Any]]:
    table = []
    for t in trials:
        row = trial_row(t)
        row.update(
            worker=t.user_attrs.get(TrialKey.WORKER),
            cost=costs[t.number],
            gpus=t.user_attrs.get(TrialKey.GPUS),
            retry_of=t.user_attrs.get(TrialKey.RETRY_OF),
            is_best=t.number == best_number,
            pareto=t.number in on_front,
        )
        table.append(row)
    return table


def _by_learning_rate(complete: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    return [
        {
            "number": t.number,
            "learning_rate": t.params["learning_rate"],
            "value": _value(t),
            "model_size": t.params.get("model_size"),
        }
        for t in complete
        if finite(t.params.get("learning_rate")) is not None
    ]


def _cost_rows(
    complete: Sequence[FrozenTrial],
    costs: Mapping[int, float | None],
    direction: str,
    multi: bool,
) -> tuple[list[dict[str, Any]], set[int]]:
    """The metric-against-cost points and the numbers of the trials on their Pareto front."""
    priced = [t for t in complete if costs[t.number] is not None]
    points = [(costs[t.number], _value(t)) for t in priced]
    if multi:
        # The study's own Pareto front (as Optuna's study.best_trials: twins are both on it).
        sign = 1.0 if direction == "minimize" else -1.0
        front = pareto_flags([(sign * v, c) for c, v in points])  # type: ignore[operator]
    else:
        front = pareto_front(points, direction)  # type: ignore[arg-type]
    rows = [
        {
            "number": t.number,
            "cost": costs[t.number],
            "value": _value(t),
            "model_size": t.params.get("model_size"),
            "pareto": on,
        }
        for t, on in zip(priced, front, strict=True)
    ]
    return rows, {t.number for t, on in zip(priced, front, strict=True) if on}


def _timeline(trials: Sequence[FrozenTrial], now: dt.datetime) -> list[dict[str, Any]]:
    timeline = []
    for t in trials:
        if t.datetime_start is None:
            continue
        end = t.datetime_complete or now  # a running trial's bar reaches now: a stall shows
        timeline.append(
            {
                "number": t.number,
                "worker": str(t.user_attrs.get(TrialKey.WORKER) or "unknown worker"),
                "start": t.datetime_start.isoformat(),
                "end": end.isoformat(),
                "seconds": (end - t.datetime_start).total_seconds(),
                "state": t.state.name,
                TrialKey.END_REASON: end_reason_text(t),
            }
        )
    return timeline


def compare(studies: Sequence[StudyRows]) -> list[dict[str, Any]]:
    """One row per study for the side-by-side table of best trials."""
    rows = []
    for s in studies:
        best = s.best
        rows.append(
            {
                "study": s.name,
                "metric": s.metric,
                "direction": s.direction,
                "trials": sum(s.counts.values()),
                "complete": s.counts.get("COMPLETE", 0),
                "best_number": best["number"] if best else None,
                "best_value": best["value"] if best else None,
                "params": dict(best["params"]) if best else {},
                "best_epoch": best["best_epoch"] if best else None,
                "best_cost": best["cost"] if best else None,
                "device": best["device"] if best else None,
                "cost_unit": s.cost_unit,
                "total_cost": s.total_cost,
            }
        )
    return rows
