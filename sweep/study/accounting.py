"""The budget and cost rules: which trials count towards `--trials`, what a trial cost, and
the sweep's own overhead. Plain functions of stored trials and study attributes (no torch).

One formula each, used by the claim (sweep.storage), the objective, `sweep status`, `sweep best
--budget` and the report alike, so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from sweep.study.attrs import SESSION_PREFIX, EndReason, TrialKey

__all__ = [
    "NOT_COUNTED_REASONS",
    "RETRIED_REASONS",
    "cost_of",
    "counts_towards_budget",
    "finite",
    "overhead",
    "trial_cost",
]

# End reasons of trials that did not end because of their own parameters: they do not count
# towards --trials (their slot is run again), see `counts_towards_budget`.
NOT_COUNTED_REASONS = frozenset({EndReason.INTERRUPTED, EndReason.ORPHAN})
# Trials whose worker was lost or preempted, or that the machine stopped (a full disk, a
# database that stayed away): not counted when a retry was queued (the retry counts); counted
# when retries ran out (something in the trial may be what kills its workers).
RETRIED_REASONS = frozenset({EndReason.WORKER_LOST, EndReason.PREEMPTED, EndReason.INFRASTRUCTURE})


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
        reason = trial.user_attrs.get(TrialKey.END_REASON)
        if reason in RETRIED_REASONS:
            return not trial.user_attrs.get(TrialKey.RETRIED, False)
        return reason is not None and reason not in NOT_COUNTED_REASONS
    return False


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def cost_of(seconds: float, gpus: Any) -> float:
    """Compute of `seconds` of training on `gpus` GPUs: seconds x max(1, GPUs).

    A trial trained on the CPU counts as one device, so its cost is its training seconds.
    The one formula behind `sweep best --budget`, the report and the cost objective of a
    multi-objective study (the objective returns it), so they cannot disagree.
    """
    n_gpus = int(gpus) if isinstance(gpus, int | float) and math.isfinite(gpus) else 0
    return float(seconds) * max(1, n_gpus)


def trial_cost(trial: FrozenTrial) -> float | None:
    """A trial's compute (`cost_of` its recorded train_seconds and gpus); None if it recorded
    no training time."""
    seconds = finite(trial.user_attrs.get(TrialKey.TRAIN_SECONDS))
    if seconds is None:
        return None
    return cost_of(seconds, trial.user_attrs.get(TrialKey.GPUS))


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
