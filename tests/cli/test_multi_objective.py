"""Cost as a second objective: `metric: [val_loss, cost]` makes the study multi-objective.

The study file's errors, the samplers that can search such a study, and one real sweep of the
tiny demo-data study (conftest.TINY_STUDY with cost added) run once for the module through the
CLI and copied into each test's directory: its stored values, its Pareto front (checked pair by
pair here, not with the code under test), `sweep status`, `sweep best --budget`, the report,
the kept model, `sweep confirm` and continuing with another metric.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import SAMPLERS, StudyConfig, load_study
from sweep.errors import ConfigError
from sweep.report import collect, render_page
from sweep.runner import Objective, TrialFailed
from sweep.search import make_pruner, make_sampler
from sweep.study import best_trial, pareto_flags, study_dir
from tests.conftest import TINY_STUDY, error_line, invoke

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The tiny study with cost as a second objective and no pruner line (its default is none).
MO_STUDY = (
    TINY_STUDY.replace("name: tiny", "name: tiny-mo")
    .replace("metric: {name: val_loss, goal: minimize}", "metric: [val_loss, cost]")
    .replace("pruner: none\n", "")
)
TRIALS = 6


def write(folder: Path, text: str, name: str = "s.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(loss, cost) a dominates b: no worse in both, better in one (both minimized)."""
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def expected_front(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the complete trials no other complete trial dominates, pair by pair."""
    points = {t.number: (t.values[0], t.values[1]) for t in trials if t.state.name == "COMPLETE"}
    return {n for n, p in points.items() if not any(dominates(q, p) for q in points.values())}


# -- the study file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "objectives"),
    [
        ("[val_loss, cost]", [("val_loss", "minimize"), ("cost", "minimize")]),
        ("[cost, val_accuracy]", [("val_accuracy", "maximize"), ("cost", "minimize")]),
        (
            "[{name: val_accuracy, goal: maximize}, {name: cost, goal: minimize}]",
            [("val_accuracy", "maximize"), ("cost", "minimize")],
        ),
        ("[val_loss, {name: cost}]", [("val_loss", "minimize"), ("cost", "minimize")]),
        ("val_loss", [("val_loss", "minimize")]),
    ],
)
def test_metric_lists_cost(tmp_path: Path, metric: str, objectives: list) -> None:
    text = MO_STUDY.replace("metric: [val_loss, cost]", f"metric: {metric}")
    config = load_study(write(tmp_path, text))
    assert config.metric.objectives == objectives
    assert (config.metric.name, config.metric.goal) == objectives[0]
    assert config.metric.cost == (len(objectives) == 2)
    assert config.metric.directions == [goal for _, goal in objectives]
    # No pruner in the file: none with cost (Optuna cannot prune it), hyperband without.
    assert config.pruner.name == ("none" if config.metric.cost else "hyperband")
    # The resolved config (stored on the study) loads back as the same study, in either form.
    resolved = config.resolved()
    assert json.loads(json.dumps(resolved)) == resolved
    assert StudyConfig.model_validate(resolved) == config
    if config.metric.cost:
        assert resolved["metric"] == [
            {"name": objectives[0][0], "goal": objectives[0][1]},
            {"name": "cost", "goal": "minimize"},
        ]


@pytest.mark.parametrize(
    ("metric", "extra", "fragments"),
    [
        ("[val_loss, cost, val_accuracy]", "", ["metric[2]", "at most two objectives"]),
        ("[cost, cost]", "", ["metric[1]", "cost is listed twice"]),
        ("[cost]", "", ["metric:", "cost needs a validation metric"]),
        ("cost", "", ["metric:", "cost needs a validation metric"]),
        ("{name: cost}", "", ["metric.name", "cost needs a validation metric"]),
        ("[val_loss]", "", ["metric:", "names two objectives"]),
        ("[val_loss, {name: cost, goal: maximize}]", "", ["metric[1].goal", "not to maximize"]),
        ("[val_loss, cots]", "", ["metric[1]", "unknown objective 'cots'", "'cost'"]),
        ("[val_loss, {name: cots}]", "", ["metric[1].name", "did you mean 'cost'"]),
        ("[val_loss, {name: cost, gaol: minimize}]", "", ["metric[1].gaol", "'goal'"]),
        ("[val_loss, val_accuracy]", "", ["metric[1]", "only one validation metric"]),
        ("[val_loss, 3]", "", ["metric[1]", "a name or {name, goal}"]),
        ("[{name: val_loss, goal: maximize}, cost]", "", ["metric[0].goal", "to minimize"]),
        ("{name: val_loss, cost: true}", "", ["metric.cost", "metric: [val_loss, cost]"]),
        (
            "[val_loss, cost]",
            "pruner: hyperband\n",
            ["pruner:", "Optuna cannot prune a multi-objective study", "pruner: none"],
        ),
        (
            "[val_loss, cost]",
            "pruner: {name: median, n_warmup_steps: 1}\n",
            ["pruner:", "cannot prune", "median"],
        ),
        (
            "[val_loss, cost]",
            "sampler: cmaes\n",
            ["sampler:", "cmaes cannot search a multi-objective study", "tpe, random, gp, grid"],
        ),
    ],
)
def test_bad_metric_lists_are_one_line_errors(
    tmp_path: Path, metric: str, extra: str, fragments: list[str]
) -> None:
    text = MO_STUDY.replace("metric: [val_loss, cost]", f"metric: {metric}").replace(
        "sampler: tpe\n", ""
    )
    with pytest.raises(ConfigError) as info:
        load_study(write(tmp_path, text + extra))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "s.yaml") + ":")
    for fragment in fragments:
        assert fragment in message, message


def test_a_pruner_of_none_goes_with_cost(tmp_path: Path) -> None:
    config = load_study(write(tmp_path, MO_STUDY + "pruner: none\n"))
    assert config.pruner.name == "none"
    assert isinstance(make_pruner(config), optuna.pruners.NopPruner)


def _grid_ready(text: str) -> str:
    # Grid needs a discrete space: learning rates as values.
    return text.replace("{min: 1.0e-3, max: 1.0e-2, log: true}", "{values: [1.0e-3, 1.0e-2]}")


# Optuna's samplers built directly (make_sampler checks that cmaes's package is installed,
# and Optuna refuses two objectives before it needs it).
_OPTUNA_SAMPLERS = {"cmaes": lambda: optuna.samplers.CmaEsSampler(seed=0)}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_the_config_accepts_can_search_two_objectives(
    tmp_path: Path, sampler: str
) -> None:
    """The config's list of single-objective samplers is in step with Optuna's samplers."""
    text = _grid_ready(MO_STUDY.replace("sampler: tpe", f"sampler: {sampler}"))
    try:
        config = load_study(write(tmp_path, text))
    except ConfigError as e:
        assert "cannot search a multi-objective study" in str(e)
        accepted = False
    else:
        accepted = True

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        lr = trial.suggest_categorical("learning_rate", [1e-3, 1e-2])
        batch = trial.suggest_categorical("batch_size", [16, 32])
        epochs = trial.suggest_int("epochs", 1, 2)
        return lr * batch, float(epochs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = make_sampler(config) if accepted else _OPTUNA_SAMPLERS[sampler]()
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=made)
        if accepted:
            study.optimize(objective, n_trials=4)
            assert [len(t.values) for t in study.trials] == [2] * 4
        else:
            with pytest.raises(ValueError, match="multi-objective"):
                study.optimize(objective, n_trials=4, catch=())


# -- the Pareto front, without training ---------------------------------------------------------


def test_pareto_flags_match_pairwise_dominance() -> None:
    rng = random.Random(0)
    for size in (0, 1, 2, 5, 30):
        # Few distinct values: ties and identical points are common.
        points = [(float(rng.randint(0, 6)), float(rng.randint(0, 6))) for _ in range(size)]
        flags = pareto_flags(points)
        for p, on in zip(points, flags, strict=True):
            assert on == (not any(dominates(q, p) for q in points)), (points, p)
    assert pareto_flags([(1.0, 1.0), (1.0, 1.0), (2.0, 0.5)]) == [True, True, True]


def _mo_study(url: str, points: list[tuple[float, float]], direction: str) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name="m", directions=[direction, "minimize"])
    study.set_user_attr("metric", "val_accuracy" if direction == "maximize" else "val_loss")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2)}
    for i, (metric, cost) in enumerate(points):
        study.add_trial(
            optuna.trial.create_trial(
                values=[metric, cost],
                params={"learning_rate": 1e-4 * (i + 1)},
                distributions=dist,
                user_attrs={"train_seconds": cost, "gpus": 0, "end_reason": "complete"},
            )
        )
    return study


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_best_of_a_multi_objective_study(tmp_path: Path, direction: str) -> None:
    sign = 1.0 if direction == "minimize" else -1.0
    # (metric, cost); trials 1 and 3 share the best metric, 3 is cheaper.
    raw = [(0.5, 10.0), (0.3, 40.0), (0.4, 20.0), (0.3, 30.0), (0.6, 5.0), (0.45, 25.0)]
    points = [(sign * m, c) for m, c in raw]
    study = _mo_study(f"sqlite:///{tmp_path / 'm.db'}", points, direction)
    front = {t.number for t in study.best_trials}
    assert front == {0, 2, 3, 4}
    assert best_trial(study).number == 3  # best metric, the cheaper of the two
    assert best_trial(study, budget=25.0).number == 2
    assert best_trial(study, budget=9.0).number == 4
    assert best_trial(study, budget=4.0) is None
    for budget in (5.0, 10.0, 20.0, 25.0, 30.0, 100.0):
        # The pick is on the front of the trials that fit, at its best-metric end.
        fits = [(m, c, n) for n, (m, c) in enumerate(raw) if c <= budget]
        expected = min(fits, key=lambda f: (f[0], f[1], f[2]))[2]
        assert best_trial(study, budget=budget).number == expected


# -- a real multi-objective sweep through the CLI ----------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A directory with mo.yaml and sweep.db holding the study `tiny-mo` of TRIALS trials."""
    folder = tmp_path_factory.mktemp("swept-mo")
    (folder / "mo.yaml").write_text(MO_STUDY)
    (folder / "tiny.yaml").write_text(TINY_STUDY.replace("name: tiny", "name: tiny-mo"))
    result = CliRunner().invoke(
        app,
        ["run", str(folder / "mo.yaml"), "--trials", str(TRIALS)],
        env={
            "SWEEP_CACHE_DIR": str(shared_cache),
            "SWEEP_STORAGE": f"sqlite:///{folder}/sweep.db",
            "COLUMNS": "200",
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (folder / "run.out").write_text(result.stdout)
    return folder


@pytest.fixture
def db(swept: Path, cli_env: Path) -> Path:
    """The swept study's database and files, copied into the test's working directory."""
    for path in swept.iterdir():
        if path.is_dir():
            shutil.copytree(path, cli_env / path.name)
        else:
            shutil.copy(path, cli_env / path.name)
    return cli_env / "sweep.db"


def _study(db: Path, name: str = "tiny-mo") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


@pytest.mark.slow
def test_a_multi_objective_sweep_stores_metric_and_cost(db: Path) -> None:
    study = _study(db)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * TRIALS
    for t in trials:
        attrs = t.user_attrs
        assert len(t.values) == 2
        assert t.values[0] == pytest.approx(attrs["val_loss"])
        assert t.values[1] == pytest.approx(attrs["train_seconds"] * max(1, attrs["gpus"] or 0))
        assert t.values[1] > 0
        # Never reported (Optuna cannot prune it); the epochs are in epoch_history.
        assert t.intermediate_values == {}
        assert len(attrs["epoch_history"]) == attrs["epochs_run"] == t.params["epochs"]
    config = StudyConfig.model_validate(study.user_attrs["config"])
    assert config.metric.cost and config.pruner.name == "none"
    # Each line of `sweep run` shows the cost after the metric.
    lines = [x for x in (db.parent / "run.out").read_text().splitlines() if x.startswith("trial")]
    assert len(lines) == TRIALS and all(" cost " in line for line in lines), lines


@pytest.mark.slow
def test_the_pareto_front_is_non_dominated(db: Path) -> None:
    study = _study(db)
    trials = study.trials
    front = expected_front(trials)
    points = {t.number: (t.values[0], t.values[1]) for t in trials}
    # Checked pair by pair: front trials dominate each other never; every other trial is
    # dominated by a front trial.
    for a, b in itertools.permutations(front, 2):
        assert not dominates(points[a], points[b])
    for n in set(points) - front:
        assert any(dominates(points[f], points[n]) for f in front)
    assert {t.number for t in study.best_trials} == front

    result = invoke("status", "tiny-mo", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["directions"] == ["minimize", "minimize"]
    assert data["objectives"] == ["val_loss", "cost"]
    assert set(data["pareto_front"]) == front
    for row in data["trials"]:
        assert row["pareto"] == (row["number"] in front)
        assert row["values"] == pytest.approx(list(points[row["number"]]))
        assert row["value"] == pytest.approx(points[row["number"]][0])

    table = invoke("status", "tiny-mo")
    assert table.exit_code == 0, table.output
    assert "pareto" in table.stdout and "cost" in table.stdout
    listed = ", ".join(f"#{n}" for n in sorted(front))
    assert f"Pareto front: {listed}" in table.stdout

    studies = json.loads(invoke("studies", "--json").stdout)
    assert studies[0]["objectives"] == ["val_loss", "cost"]
    assert studies[0]["best_value"] == pytest.approx(min(p[0] for p in points.values()))


@pytest.mark.slow
def test_best_with_and_without_a_budget(db: Path) -> None:
    study = _study(db)
    points = {t.number: (t.values[0], t.values[1]) for t in study.trials}
    front = expected_front(study.trials)
    best = min(points, key=lambda n: (*points[n], n))
    assert best in front

    data = json.loads(invoke("best", "tiny-mo", "--json").stdout)
    assert data["number"] == best and data["values"] == pytest.approx(list(points[best]))
    assert data["cost"] == pytest.approx(points[best][1])

    costs = sorted(c for _, c in points.values())
    for budget in costs:
        fits = [n for n, (_, c) in points.items() if c <= budget]
        expected = min(fits, key=lambda n: (*points[n], n))
        result = invoke("best", "tiny-mo", "--budget", repr(budget), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["number"] == expected
        assert expected in front  # the best of what fits is never dominated
    result = invoke("best", "tiny-mo", "--budget", repr(costs[0] / 2))
    assert result.exit_code == 2 and "the cheapest costs" in error_line(result)


@pytest.mark.slow
def test_the_kept_model_is_the_best_and_exports(db: Path) -> None:
    study = _study(db)
    best = best_trial(study)
    kept = sorted(
        p.name for p in study_dir(db.parent / "sweep-artifacts", "tiny-mo").glob("trial-*")
    )
    assert kept == [f"trial-{best.number}"]  # keep_best: 1
    result = invoke("best", "tiny-mo", "--export", "exported")
    assert result.exit_code == 0, result.output
    manifest = json.loads((db.parent / "exported" / "manifest.json").read_text())
    assert manifest["trial"] == best.number and manifest["source"] == "kept"
    assert manifest["direction"] == "minimize"
    assert manifest["value"] == pytest.approx(best.values[0])
    assert manifest["values"] == pytest.approx(best.values)


@pytest.mark.slow
def test_report_rows_carry_the_front(db: Path) -> None:
    study = _study(db)
    front = expected_front(study.trials)
    rows = collect(study)
    assert rows.objectives == ["val_loss", "cost"] and rows.multi_objective
    assert rows.direction == "minimize" and set(rows.pareto_front) == front
    by_number = {t.number: t for t in study.trials}
    for row in rows.trials:
        assert row["pareto"] == (row["number"] in front)
        assert row["cost"] == pytest.approx(by_number[row["number"]].values[1])
        assert row["value"] == pytest.approx(by_number[row["number"]].values[0])
    assert {r["number"] for r in rows.cost if r["pareto"]} == front
    assert len(rows.cost) == TRIALS
    # Learning curves come from the epoch history (a multi-objective trial reports nothing).
    assert len(rows.curves) == TRIALS
    assert all(len(c["val_loss"]) == c["stopped_at"] for c in rows.curves)
    assert rows.best is not None and rows.best["number"] == best_trial(study).number
    page = render_page([rows])
    assert "Pareto front: val_loss against cost" in page
    assert "on front" in page


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_report_page_renders_in_a_browser(db: Path) -> None:
    from playwright.sync_api import sync_playwright

    from sweep.report import report_html, write_report
    from tests.report.test_report_browser import CHROMIUM, CHROMIUM_ARGS, Watched

    report = db.parent / "report.html"
    write_report(report, report_html([_study(db)]))
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            watched = Watched(browser)
            watched.open(report, 7)
            assert watched.plot_count() == 7 and watched.errors == []
            legend = watched.page.locator(".legendtext").all_text_contents()
            assert "Pareto front" in legend
            assert "Pareto front" in watched.page.locator("dl.header").inner_text()
        finally:
            browser.close()


@pytest.mark.slow
def test_confirm_ranks_by_the_metric_and_keeps_both_objectives(db: Path) -> None:
    study = _study(db)
    best = min(study.trials, key=lambda t: (t.values[0], t.number))
    result = invoke("confirm", "tiny-mo", "--top", "1", "--seeds", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["new_runs"] == 1
    companion = _study(db, "tiny-mo.confirm")
    assert companion.directions == study.directions
    (run,) = companion.trials
    assert run.user_attrs["confirm_source_trial"] == best.number
    assert len(run.values) == 2
    assert run.values[1] == pytest.approx(run.user_attrs["train_seconds"])


@pytest.mark.slow
def test_continuing_with_another_number_of_objectives_is_refused(db: Path, digest) -> None:
    before = digest(db)
    result = invoke("run", "tiny.yaml", "--trials", str(TRIALS + 1))
    assert result.exit_code == 2
    line = error_line(result)
    assert "has two objectives" in line and "the study file says minimize" in line
    assert digest(db) == before


# -- the objective -------------------------------------------------------------------------------


def test_a_nan_metric_still_fails_the_trial(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep.training import EpochMetrics, FineTuneResult

    def diverged(params: Any, *args: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
        epoch = EpochMetrics(1, math.nan, math.nan, 0.5, 0.1)
        assert on_epoch(epoch) is False  # never pruned: nothing to ask Optuna
        return FineTuneResult(
            best_val_loss=math.nan,
            best_val_accuracy=math.nan,
            best_epoch=0,
            epochs=(epoch,),
            end_reason="complete",
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

    monkeypatch.setattr("sweep.training.run_trial", diverged)
    config = load_study(write(tmp_path, MO_STUDY))
    study = optuna.create_study(directions=config.metric.directions)
    objective = Objective(config, cache_dir=shared_cache, artifacts_dir=tmp_path / "artifacts")
    study.optimize(objective, n_trials=1, catch=(TrialFailed,))
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["end_reason"] == "nan-loss"
