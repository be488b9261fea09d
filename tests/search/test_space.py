"""The search space: distributions, suggestions, signatures, samplers and pruners."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.config import PRUNER_SETTINGS, SAMPLERS, StudyConfig, bundled_demo_path, load_study
from sweep.errors import ConfigError
from sweep.search import (
    describe_space_change,
    distributions,
    grid_space,
    hyperband_reduction_factor,
    make_pruner,
    make_sampler,
    space_signature,
    suggest_params,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = """\
name: space
data: {demo: true, max_length: 32}
models:
  nano: {n_layer: 2, n_embd: 64, n_head: 2}
  micro: {n_layer: 4, n_embd: 128, n_head: 4}
parameters:
  learning_rate: {min: 1e-5, max: 1.0e-3, log: true}
  batch_size: {values: [16, 32, 64]}
  epochs: {min: 1, max: 4}
  model_size: {values: [nano, micro]}
  weight_decay: 0.01
  warmup_ratio: {min: 0.0, max: 0.2, step: 0.05}
seed: 7
"""
GRID = {"{min: 1e-5, max: 1.0e-3, log: true}": "{values: [1e-4, 1e-3]}"}


def load(tmp_path: Path, text: str = STUDY, **replace: str) -> StudyConfig:
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"s{abs(hash(text))}.yaml"
    path.write_text(text)
    return load_study(path)


def edited(tmp_path: Path, *pairs: tuple[str, str]) -> StudyConfig:
    text = STUDY
    for old, new in pairs:
        assert old in text
        text = text.replace(old, new)
    return load(tmp_path, text)


def test_distributions_skip_fixed_values(tmp_path: Path) -> None:
    dists = distributions(load(tmp_path))
    assert list(dists) == ["learning_rate", "batch_size", "epochs", "model_size", "warmup_ratio"]
    assert dists["learning_rate"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert dists["batch_size"] == CategoricalDistribution((16, 32, 64))
    assert dists["epochs"] == IntDistribution(1, 4)
    assert dists["model_size"] == CategoricalDistribution(("nano", "micro"))
    assert dists["warmup_ratio"] == FloatDistribution(0.0, 0.2, step=0.05)


def test_suggested_params_stay_in_range_and_fixed_values_are_filled(tmp_path: Path) -> None:
    train = pytest.importorskip("sweep.training")
    config = load(tmp_path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = suggest_params(trial, config)
        assert isinstance(params, train.TrialParams)
        assert 1e-5 <= params.learning_rate <= 1e-3
        assert params.batch_size in (16, 32, 64) and type(params.batch_size) is int
        assert 1 <= params.epochs <= 4 and type(params.epochs) is int
        assert params.model_size in ("nano", "micro")
        assert params.warmup_ratio == pytest.approx(round(params.warmup_ratio / 0.05) * 0.05)
        assert 0.0 <= params.warmup_ratio <= 0.2 + 1e-12
        assert (params.weight_decay, params.seed) == (0.01, 7)  # fixed, and the study seed
        assert set(trial.params) == set(distributions(config))  # fixed values are not params
        seen.add(params.model_size)
        study.tell(trial, params.learning_rate)
    assert seen == {"nano", "micro"}


def test_enqueued_trial_is_suggested_back(tmp_path: Path) -> None:
    pytest.importorskip("sweep.training")
    config = load(
        tmp_path,
        STUDY + "enqueue:\n  - {learning_rate: '3e-4', batch_size: 64, model_size: micro}\n",
    )
    study = optuna.create_study(sampler=make_sampler(config))
    for entry in config.enqueue:
        study.enqueue_trial(entry)
    params = suggest_params(study.ask(), config)
    assert (params.learning_rate, params.batch_size, params.model_size) == (3e-4, 64, "micro")


def test_signature_is_json_and_equal_for_equal_files(tmp_path: Path) -> None:
    a, b = load(tmp_path), load(tmp_path, STUDY + "trials: 9\n")  # trials is not the space
    sig = space_signature(a)
    assert json.loads(json.dumps(sig)) == sig
    assert sig == space_signature(b)
    assert describe_space_change(json.loads(json.dumps(sig)), space_signature(b)) is None
    assert sig["fixed"] == {"weight_decay": 0.01}
    assert set(sig["models"]) == {"nano", "micro"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "max: 1.0e-3, log",
            "max: 1.0e-2, log",
            "learning_rate: range 1e-05..0.001 (log) -> 1e-05..0.01 (log)",
        ),
        ("[16, 32, 64]", "[16, 32, 64, 128]", "batch_size: added value 128"),
        ("[16, 32, 64]", "[32]", "batch_size: removed values 16, 64"),
        ("[16, 32, 64]", "[64, 32, 16]", "batch_size: values reordered"),
        ("weight_decay: 0.01", "weight_decay: 0.1", "weight_decay: fixed 0.01 -> 0.1"),
        (
            "weight_decay: 0.01",
            "weight_decay: {min: 0, max: 0.1}",
            "weight_decay: fixed 0.01 -> range 0.0..0.1",
        ),
        ("  weight_decay: 0.01\n", "", "weight_decay: removed (was fixed 0.01)"),
        ("epochs: {min: 1, max: 4}", "epochs: {values: [1, 2]}", "epochs: range 1..4 -> values"),
        (
            "micro: {n_layer: 4,",
            "micro: {n_layer: 6,",
            "models.micro: 4/128/4 (layers/embd/heads) -> 6/128/4",
        ),
    ],
)
def test_describe_space_change_names_the_change(tmp_path: Path, old, new, expected) -> None:
    before = space_signature(load(tmp_path))
    after = space_signature(edited(tmp_path, (old, new)))
    message = describe_space_change(before, after)
    assert message is not None and expected in message
    assert len(message.splitlines()) == 1


def test_describe_space_change_lists_several_changes_and_odd_input(tmp_path: Path) -> None:
    after = space_signature(
        edited(tmp_path, ("[16, 32, 64]", "[16, 32, 64, 128]"), ("max: 4}", "max: 6}"))
    )
    message = describe_space_change(space_signature(load(tmp_path)), after)
    assert message == "batch_size: added value 128; epochs: range 1..4 -> 1..6"
    assert "format changed" in describe_space_change({"version": 0}, after)
    assert describe_space_change({}, after)  # never raises on a signature from elsewhere


def _discrete(tmp_path: Path) -> StudyConfig:
    return edited(tmp_path, *GRID.items(), ("name: space", "name: space\nsampler: grid"))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_builds_and_samples(tmp_path: Path, sampler: str) -> None:
    pytest.importorskip("sweep.training")
    base = _discrete(tmp_path) if sampler == "grid" else load(tmp_path)
    config = base.model_copy(update={"sampler": sampler})
    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        with pytest.raises(ConfigError, match="pip install cmaes"):
            make_sampler(config)
        return
    study = optuna.create_study(sampler=make_sampler(config))
    study.optimize(lambda t: suggest_params(t, config).learning_rate, n_trials=3)
    assert len(study.trials) == 3


def test_tpe_is_multivariate_with_constant_liar(tmp_path: Path) -> None:
    sampler = make_sampler(load(tmp_path))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._multivariate and sampler._constant_liar


def test_grid_covers_the_discrete_space(tmp_path: Path) -> None:
    pytest.importorskip("sweep.training")
    config = _discrete(tmp_path)
    space = grid_space(config)
    assert space["warmup_ratio"] == [0.0, 0.05, 0.1, 0.15, 0.2]  # no 0.15000000000000002
    assert space["epochs"] == [1, 2, 3, 4]
    size = 2 * 3 * 4 * 2 * 5
    study = optuna.create_study(sampler=make_sampler(config))
    study.optimize(lambda t: suggest_params(t, config).learning_rate, n_trials=size + 5)
    assert len(study.trials) == size  # the grid sampler stops the study when it is exhausted
    points = {tuple(sorted(t.params.items())) for t in study.trials}
    expected = {
        tuple(sorted(zip(space, combo, strict=True)))
        for combo in itertools.product(*space.values())
    }
    assert points == expected


def test_grid_refuses_a_continuous_range(tmp_path: Path) -> None:
    config = load(tmp_path).model_copy(update={"sampler": "grid"})  # bypasses the load check
    with pytest.raises(ConfigError, match="learning_rate is a continuous range"):
        make_sampler(config)


@pytest.mark.parametrize("pruner", sorted(PRUNER_SETTINGS))
def test_each_pruner_builds(tmp_path: Path, pruner: str) -> None:
    built = make_pruner(load(tmp_path, STUDY + f"pruner: {pruner}\n"))
    assert isinstance(built, optuna.pruners.BasePruner)


def test_pruner_defaults_and_settings(tmp_path: Path) -> None:
    hyperband = make_pruner(load(tmp_path))
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (1, 4)  # epochs are the resource
    # 4 epochs: a factor of 3 would leave two brackets, so the default is 2 (three brackets).
    assert hyperband._reduction_factor == 2
    assert [hyperband_reduction_factor(n) for n in (1, 4, 8, 9, 30)] == [2, 2, 2, 3, 3]
    # Successive halving follows the same rule.
    asha = make_pruner(load(tmp_path, STUDY + "pruner: successive_halving\n"))
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    assert (asha._min_resource, asha._reduction_factor) == (1, 2)
    longer = STUDY.replace("{min: 1, max: 4}", "{min: 1, max: 12}")
    assert (
        make_pruner(load(tmp_path, longer + "pruner: successive_halving\n"))._reduction_factor == 3
    )
    custom = make_pruner(
        load(tmp_path, STUDY + "pruner: {name: hyperband, reduction_factor: 2, max_resource: 3}\n")
    )
    assert (custom._reduction_factor, custom._max_resource) == (2, 3)
    median = make_pruner(load(tmp_path, STUDY + "pruner: {name: median, n_startup_trials: 2}\n"))
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 2)
    # One epoch only: Hyperband degenerates to one bracket instead of failing.
    assert make_pruner(edited(tmp_path, ("{min: 1, max: 4}", "1")))


def test_pruner_settings_table_matches_optuna() -> None:
    classes = {
        "hyperband": optuna.pruners.HyperbandPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "median": optuna.pruners.MedianPruner,
        "none": optuna.pruners.NopPruner,
    }
    assert set(classes) == set(PRUNER_SETTINGS)
    for name, cls in classes.items():
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
        assert set(PRUNER_SETTINGS[name]) <= accepted, name


def test_demo_space(tmp_path: Path) -> None:
    config = load_study(bundled_demo_path())
    assert set(distributions(config)) == {"learning_rate", "batch_size", "epochs", "model_size"}
    assert isinstance(make_sampler(config), optuna.samplers.TPESampler)
    assert make_pruner(config)._max_resource == 4
