"""`sweep confirm`: real fine-tunes of the tiny demo-data study (conftest.TINY_STUDY) on a real
SQLite file.

One sweep of 4 trials is run once for the module and copied into each test's directory; every
confirmation run is a real fine-tune of about a second.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from scipy import stats
from typer.testing import CliRunner

from sweep.cli import app
from sweep.confirm import config_key
from sweep.storage import close_storage, open_storage
from sweep.study.text import fmt_number
from tests.conftest import TINY_STUDY, error_line, invoke

optuna.logging.set_verbosity(optuna.logging.WARNING)

pytestmark = pytest.mark.slow


def _study(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _snapshot(db: Path, name: str) -> list[tuple]:
    """Everything of a study that confirm must leave alone."""
    study = _study(db, name)
    rows = [
        (t.number, t.state, t.values, t.params, t.user_attrs, t.intermediate_values)
        for t in study.trials
    ]
    return [study.user_attrs, study.best_trial.number, *rows]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A directory with tiny.yaml and sweep.db holding the 4-trial study `tiny`."""
    folder = tmp_path_factory.mktemp("swept")
    (folder / "tiny.yaml").write_text(TINY_STUDY)
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(folder / "tiny.yaml"),
            "--trials",
            "4",
            "--storage",
            f"sqlite:///{folder}/sweep.db",
        ],
        env={"SWEEP_CACHE_DIR": str(shared_cache), "SWEEP_STORAGE": None, "COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def db(swept: Path, cli_env: Path) -> Path:
    """The swept study's database, copied into the test's working directory (./sweep.db)."""
    for path in swept.glob("sweep.db*"):
        shutil.copy(path, cli_env / path.name)
    shutil.copy(swept / "tiny.yaml", cli_env / "tiny.yaml")
    return cli_env / "sweep.db"


def _runs(db: Path) -> list[optuna.trial.FrozenTrial]:
    return _study(db, "tiny.confirm").trials


def test_confirm_runs_new_seeds_stores_them_and_reuses_them(db: Path) -> None:
    before = _snapshot(db, "tiny")
    original = _study(db, "tiny")
    complete = sorted(original.trials, key=lambda t: (t.value, t.number))
    top2 = complete[:2]

    result = invoke("confirm", "tiny", "--top", "2", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["new_runs"] == 4 and summary["reused_runs"] == 0
    assert summary["confirm_study"] == "tiny.confirm" and not summary["interrupted"]

    # Exactly top x seeds new fine-tunes, each a full one, with seeds the originals did not use.
    runs = _runs(db)
    assert len(runs) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in runs)
    by_source: dict[int, set[int]] = {}
    for run in runs:
        source = original.trials[run.user_attrs["confirm_source_trial"]]
        assert run.params == source.params
        assert run.user_attrs["seed"] != source.user_attrs["seed"] == 0
        assert run.user_attrs["end_reason"] == "complete"
        assert run.user_attrs["epochs_run"] == run.params["epochs"] == len(run.intermediate_values)
        assert run.user_attrs["train_seconds"] > 0
        assert run.value == pytest.approx(run.user_attrs["val_loss"])
        by_source.setdefault(source.number, set()).add(run.user_attrs["seed"])
    assert by_source == {t.number: {1, 2} for t in top2}
    # The original study is untouched: trials, attributes, best.
    assert _snapshot(db, "tiny") == before
    # Confirmation runs keep no models.
    assert not (db.parent / "sweep-artifacts" / "tiny.confirm").exists()

    # The mean and std are those of the stored values (original + new seeds).
    rows = {row["trial"]: row for row in summary["configurations"]}
    assert set(rows) == {t.number for t in top2}
    values = {}
    for trial in top2:
        stored = [trial.value] + [
            r.value for r in runs if r.user_attrs["confirm_source_trial"] == trial.number
        ]
        values[trial.number] = stored
        row = rows[trial.number]
        assert row["n"] == 3 and sorted(row["values"]) == pytest.approx(sorted(stored))
        assert row["mean"] == pytest.approx(statistics.fmean(stored))
        assert row["std"] == pytest.approx(statistics.stdev(stored))
        assert len(set(stored)) > 1  # other seeds really train other models
    # The verdict is Welch's t-test between the best mean and the other configuration.
    winner, other = summary["configurations"]
    assert winner["mean"] <= other["mean"] and summary["winner"] == winner["trial"]
    welch = stats.ttest_ind(values[winner["trial"]], values[other["trial"]], equal_var=False)
    assert other["p_vs_winner"] == pytest.approx(welch.pvalue)
    expected = "clear" if welch.pvalue < 0.05 else "tied"
    assert summary["verdict"] == expected

    # Again: nothing re-run; the table shows the same mean ± std.
    result = invoke("confirm", "tiny", "--top", "2", "--seeds", "2")
    assert result.exit_code == 0, result.output
    assert len(_runs(db)) == 4
    assert "runs: 0 new, 4 reused, in study tiny.confirm" in result.stdout
    for row in summary["configurations"]:
        assert f"{fmt_number(row['mean'])} ± {fmt_number(row['std'])}" in result.stdout
    assert "verdict: trial" in result.stdout

    # One more seed: only the missing runs (seed 3 of each configuration) are trained.
    result = invoke("confirm", "--top", "2", "--seeds", "3", "--json")  # the only study's name
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new_runs"] == 2
    runs = _runs(db)
    assert len(runs) == 6 and {r.user_attrs["seed"] for r in runs[4:]} == {3}
    assert _snapshot(db, "tiny") == before
    # Commands without a NAME still mean the sweep's study, not its companion.
    result = invoke("status")
    assert result.exit_code == 0 and "tiny.confirm" not in result.stdout, result.output
    # The companion study is not a study to confirm.
    result = invoke("confirm", "tiny.confirm")
    assert result.exit_code == 2 and "run sweep confirm tiny" in error_line(result)


def test_fewer_configurations_than_top_uses_those(db: Path) -> None:
    result = invoke("run", "tiny.yaml", "--trials", "1", "--name", "one")
    assert result.exit_code == 0, result.output
    result = invoke("confirm", "one", "--top", "3", "--seeds", "1", "--json")
    assert result.exit_code == 0, result.output
    assert "1 distinct complete configuration(s), fewer than --top 3" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["found"] == 1 and summary["new_runs"] == 1 and summary["verdict"] == "single"
    assert len(_study(db, "one.confirm").trials) == 1


def test_a_running_confirm_is_respected_and_a_dead_one_is_run_again(db: Path, digest) -> None:
    result = invoke("confirm", "tiny", "--top", "1", "--seeds", "1")
    assert result.exit_code == 0, result.output
    # A run of seed 2 left RUNNING by another process on this host.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        storage = open_storage(f"sqlite:///{db}")
        try:
            best = optuna.load_study(study_name="tiny", storage=storage).best_trial
            companion = optuna.load_study(study_name="tiny.confirm", storage=storage)
            companion.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.RUNNING,
                    params=best.params,
                    distributions=best.distributions,
                    user_attrs={
                        "confirm_key": config_key(best.params),
                        "confirm_source_trial": best.number,
                        "seed": 2,
                        "worker": f"{socket.gethostname()}:{sleeper.pid}",
                    },
                )
            )
        finally:
            close_storage(storage)
        before = digest(db)
        result = invoke("confirm", "tiny", "--top", "1", "--seeds", "2")
        assert result.exit_code == 2
        assert "another sweep confirm is running on 'tiny'" in error_line(result)
        assert digest(db) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    # Its process is gone: the run is failed as lost and its seed trained again.
    result = invoke("confirm", "tiny", "--top", "1", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["new_runs"] == 1 and summary["reused_runs"] == 1
    lost, new = _runs(db)[1:]
    assert lost.state == optuna.trial.TrialState.FAIL
    assert lost.user_attrs["end_reason"] == "worker-lost"
    assert new.state == optuna.trial.TrialState.COMPLETE and new.user_attrs["seed"] == 2


def _add_failed_only_study(db: Path) -> None:
    """A sweep study (same attrs as `tiny`) whose only trial failed."""
    storage = open_storage(f"sqlite:///{db}")
    try:
        attrs = optuna.load_study(study_name="tiny", storage=storage).user_attrs
        study = optuna.create_study(study_name="failed", storage=storage)
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL, user_attrs={"end_reason": "nan-loss"}
            )
        )
    finally:
        close_storage(storage)  # folds the WAL back: the file stays as it is from here on


BAD_INPUTS = [
    ("unknown study", ["nope"], "no study named 'nope'"),
    ("top 0", ["tiny", "--top", "0"], "--top must be at least 1, got 0"),
    ("seeds 0", ["tiny", "--seeds", "0"], "--seeds must be at least 1, got 0"),
    ("no complete trial", ["failed"], "study 'failed' has no complete trial to confirm"),
    ("missing file", ["--storage", "sqlite:///missing.db"], "no study database at missing.db"),
]


@pytest.mark.parametrize(
    ("args", "words"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_database_alone(
    db: Path, digest, args: list[str], words: str
) -> None:
    _add_failed_only_study(db)
    before = digest(db)
    result = invoke("confirm", *args)
    assert result.exit_code == 2, result.output
    assert words in error_line(result)
    assert digest(db) == before
    assert not (db.parent / "missing.db").exists()
    assert "tiny.confirm" not in optuna.get_all_study_names(f"sqlite:///{db}")


def _confirm_states(db: Path) -> list[str]:
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute(
            "SELECT t.state FROM trials t JOIN studies s ON t.study_id = s.study_id "
            "WHERE s.study_name = 'tiny.confirm' ORDER BY t.number"
        ).fetchall()
    return [row[0] for row in rows]


def test_ctrl_c_leaves_nothing_running_and_confirm_resumes(db: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "confirm", "tiny", "--top", "2", "--seeds", "2"],
        cwd=db.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            states = _confirm_states(db) if db.exists() else []
            # The second run: the first one finished, so an interrupted run sits after a
            # complete one (and the finished one must be reused below).
            if states.count("COMPLETE") >= 1 and states[-1:] == ["RUNNING"]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    states = _confirm_states(db)
    assert "RUNNING" not in states
    done = states.count("COMPLETE")
    interrupted = [t for t in _runs(db) if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["end_reason"] for t in interrupted] == ["interrupted"] * len(interrupted)
    assert done + len(interrupted) == len(states) and 1 <= done < 4

    result = invoke("confirm", "tiny", "--top", "2", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["reused_runs"] == done and summary["new_runs"] == 4 - done
    complete = [t for t in _runs(db) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({(t.user_attrs["confirm_key"], t.user_attrs["seed"]) for t in complete}) == 4
    assert all(math.isfinite(row["mean"]) for row in summary["configurations"])
