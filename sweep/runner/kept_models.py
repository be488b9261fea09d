"""Which kept models stay: those of the best `keep_best` trials (by the study's metric)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from sweep.study import TrialKey, chain_key, metric_of, remove_owned, study_dir, trial_cost

__all__ = ["prune_kept_models"]


def prune_kept_models(
    study: optuna.Study,
    artifacts_dir: Path,
    keep: int,
    trials: Sequence[FrozenTrial] | None = None,
) -> list[int]:
    """Keep only the models of the best `keep` COMPLETE trials; delete the other finished ones.

    A kept model belongs to a retry chain (sweep.study.chain_key): its folder goes only when
    every trial of the chain has finished and none of them is among the best, so a trial that is
    running or queued for a retry (here or in another worker) keeps its folder. Only folders that
    sweep made are deleted. `trials`: the study's trials if the caller has them already. Returns
    the chain keys of the removed folders.
    """
    root = study_dir(artifacts_dir, study.study_name)
    if not root.is_dir():
        return []
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    # Ranked by the metric (values[0], also in a multi-objective study), the cheaper of equals
    # first: the first is the trial `sweep best` picks, whose model is the one to keep.
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(
        (sign * value, _cost(t), t.number, chain_key(t))
        for t in trials
        if (value := metric_of(t)) is not None
    )
    kept_chains = {key for _, _, _, key in ranked[: max(keep, 0)]}
    known_chains = {chain_key(t) for t in trials}
    # A chain goes on while one of its trials is unfinished, or while its latest trial ended
    # with a retry queued (callers may pass finished trials only: the retry is not among them).
    latest: dict[int, FrozenTrial] = {}
    for t in trials:
        key = chain_key(t)
        if key not in latest or t.number > latest[key].number:
            latest[key] = t
    unfinished_chains = {
        key
        for key, t in latest.items()
        if not t.state.is_finished() or t.user_attrs.get(TrialKey.RETRIED)
    } | {chain_key(t) for t in trials if not t.state.is_finished()}
    removed = []
    for folder in root.glob("trial-*"):
        try:
            key = int(folder.name.removeprefix("trial-"))
        except ValueError:
            continue
        unused = key in known_chains and key not in kept_chains | unfinished_chains
        if unused and remove_owned(folder):
            removed.append(key)
    return sorted(removed)


def _cost(trial: FrozenTrial) -> float:
    cost = trial_cost(trial)
    return math.inf if cost is None else cost
