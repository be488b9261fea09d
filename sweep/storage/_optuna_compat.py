"""Every use of Optuna's private members in sweep, in one place, with the versions it was tested on.

sweep goes below Optuna's public API where that API cannot do the job: the budget claim is one SQL
transaction over Optuna's tables, a worker caches finished trials and keeps its own running trial
in Optuna's cache, the lost-trial check reads heartbeats, and trial ids (which Optuna keeps
private) name trials in storage calls. Each such use is a function here, so an Optuna release
that moves them breaks this module and its tests, not the whole package; `SUPPORTED_OPTUNA`
(also pyproject's dependency range) is checked by a test against the installed Optuna.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "SUPPORTED_OPTUNA",
    "IntermediateValueRow",
    "StudyRow",
    "TrialHeartbeatRow",
    "TrialRow",
    "TrialSystemAttributeRow",
    "cache_running_trial",
    "drop_sampler_view",
    "frozen_study_id",
    "rdb_below",
    "read_trials",
    "stale_trial_ids",
    "storage_of",
    "study_id_of",
    "study_trials",
    "trial_id_of",
]

# The Optuna releases sweep runs on: the lowest it was written for, and the first it has not
# been tested on (pyproject.toml carries the same range; a test keeps them in step).
SUPPORTED_OPTUNA = (">=4.2", "<5.2")

# Optuna's table models (`optuna/storages/_rdb/models.py`), unchanged in their columns since
# Optuna 1: trials(trial_id, number, study_id, state, datetime_start), trial system attributes,
# heartbeats and intermediate values.
StudyRow = models.StudyModel
TrialRow = models.TrialModel
TrialSystemAttributeRow = models.TrialSystemAttributeModel
TrialHeartbeatRow = models.TrialHeartbeatModel
IntermediateValueRow = models.TrialIntermediateValueModel


def trial_id_of(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (what every storage call takes; Optuna keeps it private)."""
    return trial._trial_id


def study_id_of(study: optuna.Study) -> int:
    """The storage's id of a study."""
    return study._study_id


def frozen_study_id(study: Any) -> int:
    """The storage's id of a FrozenStudy (from `storage.get_all_studies()`)."""
    return study._study_id


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study object reads and writes through."""
    return study._storage


def rdb_below(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under Optuna's cache (or `storage` itself); None for another kind."""
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    return backend if isinstance(backend, RDBStorage) else None


def stale_trial_ids(rdb: RDBStorage, study: int, grace: float) -> list[int]:
    """Ids of the study's RUNNING trials whose last heartbeat is older than `grace` seconds."""
    rdb.grace_period = grace
    return list(rdb._get_stale_trial_ids(study))


def read_trials(rdb: RDBStorage, study: int, ids: Container[int], bound: int) -> list[FrozenTrial]:
    """The study's trials with these ids, and every trial with an id above `bound`, in one query
    (Optuna's own reader: `_get_trials(study_id, states, included_ids, id_greater_than)`)."""
    return rdb._get_trials(study, None, ids, bound)


def cache_running_trial(storage: BaseStorage, study: int, trial: FrozenTrial) -> None:
    """Put a running trial this worker made outside Optuna into Optuna's cache, as Optuna does for
    a trial it creates itself: its writes of parameters then find it there."""
    if not isinstance(storage, _CachedStorage):
        return
    with storage._lock:
        storage._studies.setdefault(study, _StudyInfo())
        storage._add_trials_to_cache(study, [copy.deepcopy(trial)])


def drop_sampler_view(study: optuna.Study) -> None:
    """Forget the study's per-trial copy of its trials (what `Study.ask` does before it makes a
    trial), so that a trial made without `ask` samples from the study as it is now."""
    study._thread_local.cached_all_trials = None


def study_trials(study: optuna.Study, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """The study's trials as samplers see them (the per-trial cached copy, no deep copy)."""
    return study._get_trials(deepcopy=False, states=states, use_cache=True)
