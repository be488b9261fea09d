"""The objective and the session loop: values, user attributes, pruning, failures, budget."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.config import load_study
from sweep.errors import DataError
from sweep.runner import Objective, Session, TrialFailed, prune_kept_models
from sweep.study import chain_key, counts_towards_budget, mark_owned, model_dir, study_dir

optuna.logging.set_verbosity(optuna.logging.ERROR)


class AlwaysPrune(optuna.pruners.BasePruner):
    """Prunes at the first report: makes the pruned path deterministic."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def _config(study_file: Path, **update):
    config = load_study(study_file)
    return config.model_copy(update=update) if update else config


def _study(tmp_path: Path, direction: str = "minimize", pruner=None) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'o.db'}",
        study_name="tiny",
        direction=direction,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner or optuna.pruners.NopPruner(),
    )


def _objective(config, tmp_path: Path, shared_cache: Path, **kwargs) -> Objective:
    return Objective(config, cache_dir=shared_cache, artifacts_dir=tmp_path / "artifacts", **kwargs)


@pytest.mark.slow
def test_complete_trial_records_what_it_cost(
    tiny_study: Path, tmp_path: Path, shared_cache: Path
) -> None:
    epochs: list[tuple[int, int]] = []
    objective = _objective(
        _config(tiny_study),
        tmp_path,
        shared_cache,
        on_epoch=lambda number, params, metrics: epochs.append((number, metrics.epoch)),
    )
    study = _study(tmp_path)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    attrs = trial.user_attrs
    assert attrs["end_reason"] == "complete"
    assert trial.value == pytest.approx(attrs["val_loss"])
    assert 1 <= attrs["best_epoch"] <= attrs["epochs_run"] == trial.params["epochs"]
    assert list(trial.intermediate_values) == list(range(1, attrs["epochs_run"] + 1))
    assert epochs == [(0, e) for e in range(1, attrs["epochs_run"] + 1)]
    assert attrs["train_seconds"] > 0 and attrs["samples_per_s"] > 0
    assert attrs["device"].startswith("cpu") and attrs["n_params"] > 0
    assert 0 <= attrs["val_accuracy"] <= 1 and attrs["seed"] == 0
    assert len(attrs["epoch_history"]) == attrs["epochs_run"]
    assert objective.trials_run == 1
    assert objective.train_seconds == pytest.approx(attrs["train_seconds"], abs=1e-3)
    # keep_best (default 1): the best epoch's model is in the trial's folder
    assert (model_dir(tmp_path / "artifacts", "tiny", 0) / "config.json").is_file()
    # the checkpoint is gone after a finished trial
    assert not list((tmp_path / "artifacts" / "checkpoints").glob("*/trial-0/*"))


@pytest.mark.slow
def test_pruned_trial(tiny_study: Path, tmp_path: Path, shared_cache: Path) -> None:
    study = _study(tmp_path, pruner=AlwaysPrune())
    study.enqueue_trial({"epochs": 2})
    study.optimize(_objective(_config(tiny_study), tmp_path, shared_cache), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["end_reason"] == "stopped"
    assert trial.user_attrs["pruned_at_epoch"] == 1 and trial.user_attrs["epochs_run"] == 1
    assert counts_towards_budget(trial)


@pytest.mark.slow
def test_last_epoch_is_never_pruned(tiny_study: Path, tmp_path: Path, shared_cache: Path) -> None:
    study = _study(tmp_path, pruner=AlwaysPrune())
    study.enqueue_trial({"epochs": 1})
    study.optimize(_objective(_config(tiny_study), tmp_path, shared_cache), n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE


@pytest.mark.slow
def test_accuracy_metric(tiny_study: Path, tmp_path: Path, shared_cache: Path) -> None:
    tiny_study.write_text(
        tiny_study.read_text().replace(
            "metric: {name: val_loss, goal: minimize}", "metric: {name: val_accuracy}"
        )
    )
    config = _config(tiny_study)
    assert config.metric.directions == ["maximize"]
    study = _study(tmp_path, direction="maximize")
    study.optimize(_objective(config, tmp_path, shared_cache), n_trials=1)
    trial = study.trials[0]
    assert trial.value == pytest.approx(trial.user_attrs["val_accuracy"])
    assert all(0 <= v <= 1 for v in trial.intermediate_values.values())


def test_an_error_in_a_trial_fails_it_and_the_sweep_goes_on(
    tiny_study: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug inside the fine-tune cannot be provoked with real inputs; replace the call.
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("sweep.training.run_trial", broken)
    study = _study(tmp_path)
    session = Session(study, _objective(_config(tiny_study), tmp_path, shared_cache), n_trials=2)
    session.run()
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert study.trials[0].user_attrs["end_reason"] == "error"
    assert study.trials[0].user_attrs["error"] == "RuntimeError: boom"
    assert all(counts_towards_budget(t) for t in study.trials)  # no endless retrying
    assert not session.interrupted


def test_a_sweep_error_in_a_trial_stops_the_run(
    tiny_study: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bad_data(*args, **kwargs):
        raise DataError("train.csv: no column 'label'")

    monkeypatch.setattr("sweep.training.run_trial", bad_data)
    study = _study(tmp_path)
    session = Session(study, _objective(_config(tiny_study), tmp_path, shared_cache), n_trials=5)
    with pytest.raises(DataError):
        session.run()
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert study.trials[0].user_attrs["error"] == "train.csv: no column 'label'"
    # the session's timing was saved even so
    assert any(k.startswith("session:") for k in study.user_attrs)


def test_interrupt_fails_the_trial_and_is_not_counted(
    tiny_study: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sweep.training.run_trial", interrupted)
    study = _study(tmp_path)
    session = Session(study, _objective(_config(tiny_study), tmp_path, shared_cache), n_trials=5)
    session.run()
    assert session.interrupted
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["end_reason"] == "interrupted"
    assert not counts_towards_budget(trial)
    assert [t.number for t in session.finished_here] == [0]
    record = next(v for k, v in study.user_attrs.items() if k.startswith("session:"))
    assert record["interrupted"] and record["trials"] == 1


def _result(value: float, end_reason: str = "complete"):
    from sweep.training import EpochMetrics, FineTuneResult

    epoch = EpochMetrics(1, value, value, 0.5, 0.1)
    return epoch, FineTuneResult(
        best_val_loss=value,
        best_val_accuracy=0.5 if math.isfinite(value) else math.nan,
        best_epoch=1 if math.isfinite(value) else 0,
        epochs=(epoch,),
        end_reason=end_reason,
        train_seconds=0.1,
        samples_per_s=1.0,
        tokens_per_s=1.0,
        peak_memory_mb=1.0,
        device="cpu",
        n_params=1,
        micro_batch=16,
        micro_batch_halvings=0,
        resumed_from_epoch=0,
    )


def test_nan_value_fails_with_reason(
    tiny_study: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def diverged(params, *args, on_epoch=None, **kwargs):
        epoch, result = _result(math.nan, "nan-loss")
        on_epoch(epoch)
        return result

    monkeypatch.setattr("sweep.training.run_trial", diverged)
    study = _study(tmp_path)
    study.optimize(
        _objective(_config(tiny_study), tmp_path, shared_cache), n_trials=1, catch=(TrialFailed,)
    )
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["end_reason"] == "nan-loss"
    assert trial.user_attrs["val_loss"] is None  # JSON has no NaN
    assert trial.intermediate_values == {}  # a NaN is not reported to the pruner
    assert counts_towards_budget(trial)


def test_sigint_inside_the_fine_tune_interrupts_it(
    tiny_study: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def training(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises KeyboardInterrupt here
        raise AssertionError("SIGINT did not interrupt the fine-tune")

    monkeypatch.setattr("sweep.training.run_trial", training)
    study = _study(tmp_path)
    session = Session(study, _objective(_config(tiny_study), tmp_path, shared_cache), n_trials=3)
    session.run()
    assert session.interrupted
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["end_reason"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handed back


def test_sigint_between_trials_lets_the_trial_finish_being_recorded(
    tiny_study: Path, tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweep.training.run_trial", lambda *a, **k: _result(0.5)[1])
    study = _study(tmp_path)
    # SIGINT while Optuna records the trial and our callback runs: deferred, not raised there.
    session = Session(
        study,
        _objective(_config(tiny_study), tmp_path, shared_cache),
        n_trials=3,
        on_trial_end=lambda trial: os.kill(os.getpid(), signal.SIGINT),
    )
    session.run()
    assert session.interrupted
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5
    assert trial.user_attrs["end_reason"] == "complete"


def test_prune_kept_models(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="k", direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value, state in [(0.1, "COMPLETE"), (0.9, "COMPLETE"), (0.5, "COMPLETE"), (None, "FAIL")]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5}, distributions=dist, value=value, state=TrialState[state]
            )
        )
    running = study.ask()  # a trial still running elsewhere keeps its folder
    for n in range(5):
        mark_owned(model_dir(tmp_path, "k", n))
    root = model_dir(tmp_path, "k", 0).parent
    assert root == study_dir(tmp_path, "k")
    assert prune_kept_models(study, tmp_path, keep=2) == [0, 3]
    assert sorted(p.name for p in root.iterdir()) == [
        "trial-1",
        "trial-2",
        f"trial-{running.number}",
    ]
    assert prune_kept_models(study, tmp_path, keep=0) == [1, 2]


def test_pruning_deletes_only_folders_sweep_made(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="k", direction="minimize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value in (0.1, 0.9):
        study.add_trial(
            optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, value=value)
        )
    mark_owned(model_dir(tmp_path, "k", 0))
    foreign = model_dir(tmp_path, "k", 1)  # a folder someone else put where trial 1's would go
    foreign.mkdir(parents=True)
    (foreign / "keep-me.txt").write_text("not sweep's")
    assert prune_kept_models(study, tmp_path, keep=1) == []
    assert (foreign / "keep-me.txt").read_text() == "not sweep's"


def test_a_kept_model_follows_its_retry_chain(tmp_path: Path) -> None:
    """The retry of a preempted trial keeps its model in the original's folder, which stays
    while the retry is queued or running and goes with the chain once neither is best."""
    study = optuna.create_study(study_name="k", direction="minimize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def add(state: str, value: float | None = None, **attrs: object) -> None:
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5},
                distributions=dist,
                value=value,
                state=TrialState[state],
                user_attrs=attrs,
            )
        )

    add("FAIL", end_reason="preempted", retried=True, checkpoint_of=0)  # trial 0
    add("COMPLETE", 0.5, checkpoint_of=1)  # trial 1
    add("WAITING", retry_of=0, checkpoint_of=0)  # trial 2: 0's retry, queued
    mark_owned(model_dir(tmp_path, "k", 0))
    mark_owned(model_dir(tmp_path, "k", 1))
    assert prune_kept_models(study, tmp_path, keep=1) == []  # chain 0 is still queued
    frozen = study.get_trials(deepcopy=False)
    assert [chain_key(t) for t in frozen] == [0, 1, 0]
    add("COMPLETE", 0.2, retry_of=0, checkpoint_of=0)  # the retry ran (as trial 3), best
    study._storage.set_trial_state_values(frozen[2]._trial_id, TrialState.FAIL)
    assert prune_kept_models(study, tmp_path, keep=1) == [1]
    assert model_dir(tmp_path, "k", 0).is_dir()


def test_budget_counting() -> None:
    def trial(state: str, **attrs) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(
            state=TrialState[state], value=1.0 if state == "COMPLETE" else None, user_attrs=attrs
        )

    assert counts_towards_budget(trial("COMPLETE"))
    assert counts_towards_budget(trial("PRUNED"))
    assert counts_towards_budget(trial("FAIL", end_reason="nan-loss"))
    assert counts_towards_budget(trial("FAIL", end_reason="error"))
    assert not counts_towards_budget(trial("FAIL", end_reason="interrupted"))
    assert not counts_towards_budget(trial("FAIL"))  # failed outside sweep
    assert not counts_towards_budget(trial("FAIL", end_reason="worker-lost", retried=True))
    assert counts_towards_budget(trial("FAIL", end_reason="worker-lost", retried=False))
    assert not counts_towards_budget(trial("FAIL", end_reason="preempted", retried=True))
    assert not counts_towards_budget(trial("FAIL", end_reason="orphan"))
    assert not counts_towards_budget(trial("WAITING"))


WORKER = """
import sys
from pathlib import Path
import optuna
from sweep.config import load_study
from sweep.runner import Objective
from sweep.runner import Session
from sweep.storage import open_storage
storage = open_storage(sys.argv[1])
study = optuna.load_study(study_name="tiny", storage=storage)
config = load_study(Path(sys.argv[2]))
objective = Objective(config, cache_dir=Path(sys.argv[3]), artifacts_dir=Path(sys.argv[4]))
Session(study, objective, n_trials=1, heartbeat_interval=1).run()
"""


@pytest.mark.slow
def test_a_killed_worker_is_detected_and_its_trial_resumed(
    tiny_study: Path, tmp_path: Path, shared_cache: Path
) -> None:
    """kill -9 during a trial: the heartbeat check fails it and re-runs it from its checkpoint."""
    import subprocess
    import sys

    from sweep.storage import close_storage, open_storage

    tiny_study.write_text(tiny_study.read_text().replace("epochs: {min: 1, max: 2}", "epochs: 3"))
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="tiny")
    artifacts = tmp_path / "artifacts"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(tiny_study), str(shared_cache), str(artifacts)]
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.poll() is None:
            trials = study.get_trials(deepcopy=False)
            if trials and trials[0].intermediate_values:
                break  # epoch 1 is done and checkpointed
            time.sleep(0.1)
        worker.kill()
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    (lost,) = study.get_trials(deepcopy=False)
    assert lost.state == TrialState.RUNNING, "the worker finished before it could be killed"
    time.sleep(3.5)  # past the grace period (3 heartbeats)

    objective = Objective(_config(tiny_study), cache_dir=shared_cache, artifacts_dir=artifacts)
    Session(study, objective, n_trials=1, heartbeat_interval=1).run()
    first, retry = study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL and first.user_attrs["end_reason"] == "worker-lost"
    assert first.user_attrs["retried"] is True
    assert not counts_towards_budget(first)
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert retry.user_attrs["checkpoint_of"] == 0
    close_storage(storage)
