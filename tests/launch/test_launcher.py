"""`sweep run --workers N`: the worker plan, and a real run of several workers on one SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sweep.errors import ConfigError
from sweep.launch.local import WorkerPlan, parse_gpus, plan_workers
from sweep.study import counts_towards_budget


def test_one_worker_per_gpu_and_the_cores_split() -> None:
    plans = plan_workers(4, ["0", "1", "2", "3"], cores=range(16))
    assert [p.gpu for p in plans] == ["0", "1", "2", "3"]
    assert [p.cores for p in plans] == [tuple(range(i * 4, i * 4 + 4)) for i in range(4)]
    assert plans[2].env({})["CUDA_VISIBLE_DEVICES"] == "2"
    assert plans[2].env({})["OMP_NUM_THREADS"] == "4"


def test_cpu_workers_see_no_gpu_and_share_cores_when_there_are_few() -> None:
    plans = plan_workers(3, [], cores=[0, 1])
    assert [p.gpu for p in plans] == [None, None, None]
    assert [p.cores for p in plans] == [(0,), (1,), (0,)]
    assert plans[0].env({})["CUDA_VISIBLE_DEVICES"] == ""  # hidden, not "every GPU"
    # Someone who set the threads chose: keep it.
    assert plans[0].env({"OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "2"


def test_more_workers_than_gpus_take_them_in_turn() -> None:
    assert [p.gpu for p in plan_workers(3, ["5", "7"], cores=[0])] == ["5", "7", "5"]
    assert WorkerPlan(0, "GPU-abc").env({})["CUDA_VISIBLE_DEVICES"] == "GPU-abc"


def test_gpu_lists_are_checked() -> None:
    assert parse_gpus("0, 1,3") == ["0", "1", "3"]
    with pytest.raises(ConfigError, match="'x' is not a GPU index"):
        parse_gpus("0,x")
    with pytest.raises(ConfigError, match="names a GPU twice"):
        parse_gpus("1,1")
    with pytest.raises(ConfigError, match="at least 1"):
        plan_workers(0, [], cores=[0])


@pytest.mark.slow
def test_run_with_five_workers_on_sqlite(tiny_study: Path, cli_env: Path) -> None:
    """Five real worker processes on one SQLite file: the budget is exact, the work is shared,
    every trial is printed once, and the user is told that PostgreSQL suits more workers."""
    result = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "run", str(tiny_study), "--workers", "5", "-n", "6"],
        cwd=cli_env,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PostgreSQL is the right storage" in result.stderr
    assert "with 5 workers" in result.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{cli_env / 'sweep.db'}")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(counts_towards_budget(t) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2
    printed = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert sorted(int(line.split()[1]) for line in printed) == list(range(6))
    assert "done: study tiny has 6 of 6 trials (5 workers)" in result.stdout


@pytest.mark.slow
def test_a_worker_joins_a_study_by_name(tiny_study: Path, cli_env: Path) -> None:
    """`sweep worker NAME` runs a study that exists in the storage, from its stored config."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = [sys.executable, "-m", "sweep.cli", "run", str(tiny_study), "-n", "1"]
    assert subprocess.run(first, cwd=cli_env, env=env, capture_output=True).returncode == 0
    tiny_study.unlink()  # the worker must not need the file
    result = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "worker", "tiny", "--trials", "2"],
        cwd=cli_env,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{cli_env / 'sweep.db'}")
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE"] * 2

    unknown = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "worker", "tinny"],
        cwd=cli_env,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2
    assert "no study named 'tinny'" in unknown.stderr and "did you mean 'tiny'" in unknown.stderr
