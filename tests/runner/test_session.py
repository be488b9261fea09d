"""The trial loop's bookkeeping on a real SQLite file, with an objective that does not train:
the exact budget, a trial taken over by a retry, and storage calls retried through outages."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from sweep.errors import DatabaseUnreachable
from sweep.runner import InterruptGate, Session, reap_lost_trials
from sweep.storage import ResilientStorage, close_storage, is_transient, open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)


class FakeObjective:
    """What Session needs of an Objective, around a function of the trial (no fine-tune)."""

    def __init__(self, artifacts: Path, body: Any) -> None:
        self.body = body
        self.gate = InterruptGate()
        self.preempt = threading.Event()
        self.artifacts_dir = artifacts
        self.keep_best = 0
        self.current_trial: optuna.Trial | None = None
        self.train_seconds = 0.0
        self.trials_run = 0

    def __call__(self, trial: optuna.Trial) -> float:
        self.trials_run += 1
        trial.set_user_attr("worker", f"test:{threading.get_ident()}")
        x = trial.suggest_float("x", 0.0, 1.0)
        return self.body(trial, x)


def _study(url: str) -> optuna.Study:
    storage = open_storage(url)
    return optuna.create_study(
        storage=storage, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0)
    )


def test_threads_sharing_a_study_stop_at_the_budget_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)

    def slow(trial: optuna.Trial, x: float) -> float:
        time.sleep(0.05)
        return x

    sessions = [
        Session(study, FakeObjective(tmp_path, slow), n_trials=12, heartbeat_interval=5)
        for _ in range(4)
    ]
    threads = [threading.Thread(target=s.run) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12, [(t.number, t.state.name) for t in trials][-4:]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(len(s.finished_here) for s in sessions) == 12
    close_storage(study._storage._backend)


class CountingSampler(optuna.samplers.RandomSampler):
    """Records how many trials the study shows the sampler each time it samples."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.seen: list[int] = []

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        self.seen.append(len(study._get_trials(deepcopy=False, use_cache=True)))
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_the_sampler_sees_every_trial_so_far(tmp_path: Path) -> None:
    """Optuna's per-trial view of the study is refreshed for each trial the session runs."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    sampler = CountingSampler()
    study = optuna.create_study(storage=storage, study_name="s", sampler=sampler)
    Session(study, FakeObjective(tmp_path, lambda trial, x: x), n_trials=4).run()
    assert sampler.seen == [1, 2, 3, 4]  # the finished ones and the one being sampled
    close_storage(storage)


def test_a_result_finished_after_its_trial_was_declared_lost_goes_to_the_retry(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(url)
    rdb = study._storage._backend

    def declared_lost_meanwhile(trial: optuna.Trial, x: float) -> float:
        trial.report(0.9, 1)
        time.sleep(1.2)  # SQLite's clock has 1 s steps: make the heartbeat visibly old
        assert reap_lost_trials(rdb, study._study_id, grace=0.0) == [trial.number]
        return 0.25

    session = Session(
        study, FakeObjective(tmp_path, declared_lost_meanwhile), n_trials=1, heartbeat_interval=60
    )
    session.run()
    lost, retry = study.get_trials(deepcopy=False)
    assert lost.state == TrialState.FAIL and lost.user_attrs["end_reason"] == "worker-lost"
    assert retry.state == TrialState.COMPLETE and retry.value == 0.25
    assert retry.user_attrs["retry_of"] == lost.number
    assert retry.params == lost.params and retry.intermediate_values == {1: 0.9}
    assert [t.number for t in session.finished_here] == [retry.number]
    close_storage(rdb)


class FlakyStorage:
    """Fails the first `failures` calls of get_all_studies the way a dead connection does."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    def get_all_studies(self) -> list[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise optuna.exceptions.StorageInternalError("commit failed") from (
                sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
            )
        return self.inner.get_all_studies()


def test_calls_are_retried_while_the_database_is_away_then_given_up(tmp_path: Path) -> None:
    rdb = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    sleeps: list[float] = []
    flaky = FlakyStorage(rdb, failures=4)
    storage = ResilientStorage(flaky, give_up_after=600, sleep=sleeps.append)  # type: ignore[arg-type]
    assert storage.get_all_studies() == []
    assert flaky.calls == 5 and sleeps == [0.5, 1.0, 2.0, 4.0]  # bounded exponential backoff

    hopeless = ResilientStorage(FlakyStorage(rdb, failures=10**6), give_up_after=0.0)  # type: ignore[arg-type]
    with pytest.raises(DatabaseUnreachable, match=r"database unreachable .* server closed"):
        hopeless.get_all_studies()
    close_storage(rdb)


def test_only_connection_errors_are_transient() -> None:
    dead = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("terminating connection"))
    assert is_transient(dead)
    wrapped = optuna.exceptions.StorageInternalError("x")
    wrapped.__cause__ = dead
    assert is_transient(wrapped)
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate")))


def test_first_intermediate_values_are_written_once_and_only_while_running(
    tmp_path: Path,
) -> None:
    import math

    from sweep.storage import WorkerStorage

    rdb = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=rdb, study_name="s")
    storage = WorkerStorage(study._storage, rdb)
    trial_id = storage.create_new_trial(study._study_id)
    storage.own(study._study_id, trial_id)
    assert storage.get_trial(trial_id).number == 0

    storage.set_trial_intermediate_value(trial_id, 1, 0.5)
    storage._insert_intermediate_value(trial_id, 1, 0.5)  # a retry after a lost answer
    storage.set_trial_intermediate_value(trial_id, 2, math.inf)
    storage.set_trial_intermediate_value(trial_id, 3, math.nan)
    storage.set_trial_intermediate_value(trial_id, 1, 0.25)  # a second value: Optuna's update
    stored = rdb.get_trial(trial_id).intermediate_values  # one row per step, or this raises
    assert stored[1] == 0.25 and stored[2] == math.inf and math.isnan(stored[3])
    assert storage.get_trial(trial_id).intermediate_values[1] == 0.25

    assert storage.set_trial_state_values(trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage._insert_intermediate_value(trial_id, 4, 1.0)
    close_storage(rdb)


def test_a_redone_claim_finds_the_trial_its_lost_commit_took(tmp_path: Path) -> None:
    """The database went away after a claim committed but before the worker heard back: the
    redo takes the same trial instead of leaving it RUNNING with no worker."""
    from sweep.storage import WorkerStorage, budget_lock, claim_trial

    rdb = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=rdb, study_name="s")
    study.enqueue_trial({"x": 1.0})
    storage = WorkerStorage(study._storage, rdb)
    lock = budget_lock(rdb, "s")
    study_id = study._study_id

    taken = claim_trial(storage, study_id, 5, lock, "first")  # takes the queued trial
    assert claim_trial(storage, study_id, 5, lock, "first", redo=True).trial_id == taken.trial_id
    created = claim_trial(storage, study_id, 5, lock, "second")
    assert created.created and created.trial_id != taken.trial_id
    redone = claim_trial(storage, study_id, 5, lock, "second", redo=True)
    assert redone.trial_id == created.trial_id
    # A token no try committed claims anew.
    other = claim_trial(storage, study_id, 5, lock, "third", redo=True)
    assert other.trial_id not in (taken.trial_id, created.trial_id)

    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.RUNNING] * 3
    assert [t.number for t in trials] == [0, 1, 2]
    # Each claimed trial has its first heartbeat: its worker dying now gets it found lost.
    rdb.heartbeat_interval = 1
    time.sleep(1.1)  # (SQLite's timestamps have whole seconds)
    stale_after_grace = reap_lost_trials(rdb, study._study_id, grace=0.0)
    assert sorted(stale_after_grace) == [0, 1, 2]
    reasons = [t.user_attrs["end_reason"] for t in study.get_trials(deepcopy=False)[:3]]
    assert reasons == ["worker-lost"] * 3  # (not "orphan": those are not retried)
    close_storage(rdb)
