"""The Pareto front of a study with two objectives (sweep's: the validation metric and cost).

Plain functions on numbers and FrozenTrials (only Optuna's trial types), shared by `sweep
status`, `sweep best` and the report, so they all show the same front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For points of two objectives, both minimized: whether each is on the Pareto front.

    A point is on the front when no other point is at least as good in both objectives and
    strictly better in one. Identical points are all on the front, as in Optuna's
    `study.best_trials`. Sorted sweep: O(n log n).
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    flags = [False] * len(points)
    best = math.inf
    leader: tuple[float, float] | None = None  # the first point that reached `best`
    for i in order:
        point = (points[i][0], points[i][1])
        if point[1] < best:
            flags[i], best, leader = True, point[1], point
        elif point == leader:
            flags[i] = True  # a twin of a front point: neither dominates the other
    return flags


def pareto_front_trials(
    trials: Sequence[FrozenTrial], directions: Sequence[Any]
) -> list[FrozenTrial]:
    """The COMPLETE trials of a multi-objective study on its Pareto front, by number.

    The same set as Optuna's `study.best_trials` (for finite values), computed from trials
    already read.
    """
    signs = [1.0 if direction_name(d) == "minimize" else -1.0 for d in directions[:2]]
    scored = [
        (t, (signs[0] * t.values[0], signs[1] * t.values[1]))
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and len(t.values) >= 2
        and all(math.isfinite(v) for v in t.values[:2])
    ]
    flags = pareto_flags([point for _, point in scored])
    return sorted((t for (t, _), on in zip(scored, flags, strict=True) if on), key=_number)


def _number(trial: FrozenTrial) -> int:
    return trial.number


def direction_name(direction: Any) -> str:
    """ "minimize" / "maximize" of an Optuna StudyDirection (or of that word itself)."""
    return str(getattr(direction, "name", direction)).lower()
