"""sweep.search._distinct through sweep.search.make_sampler: in a finite space, no configuration is
trained twice while an untried one is left."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from sweep.config import StudyConfig
from sweep.search import distributions, finite_space, make_sampler, suggest_params
from sweep.search._distinct import DistinctSampler


def _config(sampler: str = "tpe", **parameters: Any) -> StudyConfig:
    params = {
        "learning_rate": {"values": [1e-4, 3e-4, 1e-3]},
        "batch_size": {"values": [16, 32]},
        "epochs": {"min": 1, "max": 2},
        "model_size": "nano",
    } | parameters
    return StudyConfig.model_validate(
        {
            "name": "distinct",
            "data": {"demo": True},
            "models": {"nano": {"preset": "nano"}},
            "parameters": params,
            "sampler": sampler,
            "pruner": "none",
            "seed": 3,
        }
    )


def _loss(params: Any) -> float:
    # One clear optimum, so that a model-based sampler keeps coming back to it.
    return abs(params.learning_rate - 3e-4) * 1e3 + params.batch_size / 320 + params.epochs / 10


def _point(trial: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    return tuple(sorted(trial.params.items()))


def _run(sampler: optuna.samplers.BaseSampler, config: StudyConfig, n: int) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(lambda t: _loss(suggest_params(t, config)), n_trials=n)
    return study


@pytest.mark.parametrize("name", ["tpe", "random", "gp"])
def test_every_configuration_once_before_any_twice(name: str) -> None:
    config = _config(name)
    assert finite_space(config) is not None
    sampler = make_sampler(config)
    assert isinstance(sampler, DistinctSampler)
    study = _run(sampler, config, 12)  # the space has 3 x 2 x 2 = 12 configurations
    assert len({_point(t) for t in study.trials}) == 12


def test_plain_tpe_repeats_configurations_in_the_same_search() -> None:
    # What the wrapper is for: TPE alone, same seed and objective, trains repeats.
    config = _config()
    plain = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=config.seed)
    study = _run(plain, config, 12)
    assert len({_point(t) for t in study.trials}) < 12


def test_an_exhausted_space_repeats_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    config = _config(learning_rate={"values": [3e-4]}, epochs=1)  # 2 configurations
    with caplog.at_level(logging.WARNING, logger="sweep.search._distinct"):
        study = _run(make_sampler(config), config, 5)
    assert len({_point(t) for t in study.trials[:2]}) == 2
    assert all(_point(t) in {_point(s) for s in study.trials[:2]} for t in study.trials[2:])
    said = [r for r in caplog.records if "all 2 configurations" in r.getMessage()]
    assert len(said) == 1


def test_running_and_failed_count_as_tried_pruned_does_not() -> None:
    config = _config(
        learning_rate={"values": [3e-4]}, epochs=1, batch_size={"values": [16, 32, 64]}
    )
    study = optuna.create_study(sampler=make_sampler(config))
    first = study.ask()
    running = suggest_params(first, config).batch_size
    second = study.ask()  # asked while the first still runs (another worker's trial)
    failed = suggest_params(second, config).batch_size
    assert failed != running
    study.tell(second, state=TrialState.FAIL)
    third = study.ask()
    pruned = suggest_params(third, config).batch_size
    assert pruned not in (running, failed)
    study.tell(third, state=TrialState.PRUNED)
    # Left untried: none. The pruned configuration is the one that may run again, the only one
    # neither running nor failed.
    fourth = study.ask()
    assert suggest_params(fourth, config).batch_size == pruned


def test_enqueued_parameters_are_kept_even_when_already_tried() -> None:
    config = _config()
    study = _run(make_sampler(config), config, 3)
    again = dict(study.trials[0].params)
    study.enqueue_trial(again)
    params = suggest_params(study.ask(), config)
    assert {name: getattr(params, name) for name in again} == again
    # A partial entry: the sampler fills in the rest.
    study.enqueue_trial({"batch_size": 32})
    params = suggest_params(study.ask(), config)
    assert params.batch_size == 32 and params.learning_rate in (1e-4, 3e-4, 1e-3)


def test_a_continuous_range_keeps_the_plain_sampler() -> None:
    config = _config(learning_rate={"min": 1e-4, "max": 1e-3, "log": True})
    assert finite_space(config) is None
    assert isinstance(make_sampler(config), optuna.samplers.TPESampler)
    # A range with a step is finite.
    stepped = _config(warmup_ratio={"min": 0.0, "max": 0.2, "step": 0.1})
    assert finite_space(stepped)["warmup_ratio"] == [0.0, 0.1, 0.2]
    assert set(distributions(stepped)) == set(finite_space(stepped))


def test_sweep_run_trains_each_configuration_of_a_finite_space_once(tiny_study: Path) -> None:
    from sweep.cli import app

    text = tiny_study.read_text()
    text = text.replace(
        "learning_rate: {min: 1.0e-3, max: 1.0e-2, log: true}",
        "learning_rate: {values: [3.0e-3, 1.0e-2]}",
    ).replace("epochs: {min: 1, max: 2}", "epochs: 1")
    tiny_study.write_text(text)
    result = CliRunner().invoke(app, ["run", str(tiny_study), "--trials", "6"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_study.parent}/sweep.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    # 2 learning rates x 2 batch sizes: every one before any twice.
    assert len({_point(t) for t in trials[:4]}) == 4
    # The premise: with the study seed, a repeated configuration reproduces its result.
    first = {_point(t): t.value for t in trials[:4]}
    for t in trials[4:]:
        assert t.value == pytest.approx(first[_point(t)], abs=1e-6)
