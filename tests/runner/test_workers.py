"""Many `sweep worker` processes on one study in the real PostgreSQL, and what happens when a
worker is killed, preempted, or the database restarts under them.

Each test gets a study of its own (the database is shared). Workers are real processes running
real (tiny) fine-tunes; heartbeats every second or two, so a lost worker is found in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from sweep.storage import close_storage, open_storage
from sweep.study import counts_towards_budget
from tests.runner.tcp_proxy import TcpProxy

POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES_URL")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not POSTGRES_URL, reason="SWEEP_TEST_POSTGRES_URL not set"),
]

# A nano GPT-2 on 300 synthetic rows: one epoch takes well under a second on one core.
STUDY = """\
name: {name}
data: {{demo: true, demo_size: {rows}, max_length: 32}}
models:
  nano: {{n_layer: 2, n_embd: 64, n_head: 2}}
parameters:
  learning_rate: {{min: 1.0e-3, max: 1.0e-2, log: true}}
  batch_size: {{values: [16, 32]}}
  epochs: {epochs}
  model_size: nano
metric: {{name: val_loss, goal: minimize}}
sampler: tpe
pruner: {pruner}
trials: 4
seed: 0
"""


@pytest.fixture
def make_study(tmp_path: Path, shared_cache: Path) -> Iterator:
    """Write a study file with a fresh name; returns (path, name)."""

    def make(
        *, epochs: str = "{min: 1, max: 2}", pruner: str = "none", rows: int = 300
    ) -> tuple[Path, str]:
        name = f"w-{uuid.uuid4().hex[:10]}"
        path = tmp_path / f"{name}.yaml"
        path.write_text(STUDY.format(name=name, epochs=epochs, pruner=pruner, rows=rows))
        return path, name

    yield make


class Workers:
    """`sweep worker` processes of one test, their logs under tmp_path, all reaped at the end."""

    def __init__(self, tmp_path: Path, cache: Path) -> None:
        self.tmp_path = tmp_path
        self.cache = cache
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        study: Path,
        trials: int,
        *,
        heartbeat: float = 1.0,
        url: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.Popen:
        index = len(self.processes)
        log = open(self.tmp_path / f"worker-{index}.log", "wb")  # noqa: SIM115 (closed with it)
        env = {
            **os.environ,
            "SWEEP_CACHE_DIR": str(self.cache),
            "SWEEP_STORAGE": url or POSTGRES_URL,
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sweep.cli",
                "worker",
                str(study),
                "--trials",
                str(trials),
                "--heartbeat",
                str(heartbeat),
                "--checkpoint-dir",
                str(self.tmp_path / "checkpoints"),
                "--artifacts-dir",
                str(self.tmp_path / "artifacts"),
                *extra,
            ],
            cwd=self.tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        return [p.returncode for p in self.processes]

    def logs(self) -> str:
        return "\n".join(
            f"--- worker {i}\n{(self.tmp_path / f'worker-{i}.log').read_text()[-3000:]}"
            for i in range(len(self.processes))
        )

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(tmp_path: Path, shared_cache: Path) -> Iterator[Workers]:
    team = Workers(tmp_path, shared_cache)
    yield team
    team.kill_all()


def _trials(name: str) -> list[FrozenTrial]:
    storage = open_storage(POSTGRES_URL)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        close_storage(storage)


def _wait_for(name: str, predicate, timeout: float = 120.0) -> FrozenTrial:
    """The first trial of the study for which `predicate` holds (polling the database)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for trial in _trials(name):
                if predicate(trial):
                    return trial
        except KeyError:
            pass  # the study is not created yet
        time.sleep(0.2)
    raise AssertionError(f"no trial of {name} matched within {timeout} s")


def _check_complete_history(trials: list[FrozenTrial], budget: int) -> None:
    """Exactly `budget` counted trials, distinct numbers, nothing RUNNING or WAITING left,
    and every finished trial's intermediate values present (one per epoch it ran)."""
    counted = [t for t in trials if counts_towards_budget(t)]
    assert len(counted) == budget, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for trial in counted:
        epochs_run = trial.user_attrs["epochs_run"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs_run + 1)), trial.number
        if trial.state == TrialState.COMPLETE:
            assert epochs_run == trial.params.get("epochs", epochs_run)


def test_eight_workers_share_a_budget_of_forty_exactly(
    make_study, workers: Workers, shared_cache: Path
) -> None:
    study, name = make_study(pruner="hyperband")
    for _ in range(8):
        # 8 processes on a 2-core machine: beats every 2 s, so a busy worker is not taken for lost.
        workers.start(study, trials=40, heartbeat=2.0)
    codes = workers.wait(timeout=600)
    assert codes == [0] * 8, workers.logs()
    trials = _trials(name)
    _check_complete_history(trials, 40)
    # Every trial finished once: no FAIL (nothing went wrong), no extra trial beyond the budget.
    assert len(trials) == 40, [(t.number, t.state.name) for t in trials]
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    # The work was shared, and each trial says who ran it.
    assert len({t.user_attrs["worker"] for t in trials}) >= 4
    # TPE with the constant liar: workers that sampled at the same time did not all pick one point.
    assert len({(t.params["learning_rate"], t.params["batch_size"]) for t in trials}) == 40


def test_a_killed_worker_is_found_and_its_trial_resumed_by_another(
    make_study, workers: Workers, tmp_path: Path
) -> None:
    study, name = make_study(epochs="3", rows=600)
    for _ in range(3):
        workers.start(study, trials=6)
    victim = _wait_for(name, lambda t: t.state == TrialState.RUNNING and 1 in t.intermediate_values)
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    codes = workers.wait(timeout=300)
    assert sorted(codes) == [-signal.SIGKILL, 0, 0], workers.logs()

    trials = _trials(name)
    _check_complete_history(trials, 6)
    lost = next(t for t in trials if t.number == victim.number)
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["end_reason"] == "worker-lost" and lost.user_attrs["retried"] is True
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert retry.user_attrs["worker"] != lost.user_attrs["worker"]
    # It went on from the checkpoint of the last epoch the lost worker finished, not epoch 1.
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert retry.user_attrs["attempt"] == 2
    # The lost trial's epochs are in the retry's history, reported again from the checkpoint.
    for epoch, value in lost.intermediate_values.items():
        assert retry.intermediate_values[epoch] == pytest.approx(value)

    # `sweep status` says who ran each trial and flags the lost one.
    result = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "status", name, "--storage", POSTGRES_URL, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["number"]: row for row in json.loads(result.stdout)["trials"]}
    assert rows[lost.number]["worker_lost"] is True
    assert rows[lost.number]["worker"] == lost.user_attrs["worker"]
    assert rows[retry.number]["retry_of"] == lost.number
    assert not any(row["worker_lost"] for n, row in rows.items() if n != lost.number)


def test_sigterm_checkpoints_requeues_and_exits_zero(make_study, workers: Workers) -> None:
    study, name = make_study(epochs="3", rows=600)
    first = workers.start(study, trials=4)
    victim = _wait_for(name, lambda t: t.state == TrialState.RUNNING and 1 in t.intermediate_values)
    workers.start(study, trials=4)  # the one that will finish the preempted trial
    first.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert first.wait(timeout=30) == 0, workers.logs()
    assert time.monotonic() - sent < 30
    codes = workers.wait(timeout=300)
    assert codes == [0, 0], workers.logs()

    trials = _trials(name)
    _check_complete_history(trials, 4)
    preempted = next(t for t in trials if t.number == victim.number)
    assert preempted.state == TrialState.FAIL
    assert preempted.user_attrs["end_reason"] == "preempted"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["worker"] != preempted.user_attrs["worker"]
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert retry.user_attrs["attempt"] == 1  # a preemption is not held against the trial


def _restart_postgres() -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None or os.geteuid() != 0,
    reason="restarting PostgreSQL needs pg_ctlcluster as root",
)
def test_workers_ride_out_a_database_restart(make_study, workers: Workers) -> None:
    study, name = make_study(epochs="2", rows=600)
    for _ in range(4):
        workers.start(study, trials=12, heartbeat=2.0)
    _wait_for(name, lambda t: t.state == TrialState.COMPLETE)
    _restart_postgres()
    codes = workers.wait(timeout=600)
    assert codes == [0, 0, 0, 0], workers.logs()
    trials = _trials(name)
    _check_complete_history(trials, 12)
    # No trial was declared lost: the heartbeats got through once the server was back.
    assert not [t for t in trials if t.state == TrialState.FAIL], workers.logs()
    # The restart was really felt: by a storage call, or by a running trial's heartbeat.
    logs = workers.logs()
    assert "database unreachable" in logs or "not recorded" in logs, logs


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A forwarder to the test PostgreSQL that the test can cut: an outage of its own."""
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL)
    forwarder = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield forwarder
    forwarder.cut()


def test_a_worker_started_during_an_outage_waits_for_the_database(
    make_study, workers: Workers, proxy: TcpProxy
) -> None:
    study, name = make_study(epochs="1")
    worker = workers.start(study, trials=2, url=proxy.url(POSTGRES_URL), extra=("--db-wait", "120"))
    time.sleep(3)  # refused connections all along: it must still be waiting, not exited 2
    assert worker.poll() is None, workers.logs()
    proxy.restore()
    assert workers.wait(timeout=300) == [0], workers.logs()
    _check_complete_history(_trials(name), 2)
    assert "database unreachable" in workers.logs()


def test_a_database_that_stays_away_is_an_infrastructure_failure(
    make_study, workers: Workers, proxy: TcpProxy
) -> None:
    study, _ = make_study(epochs="1")
    workers.start(study, trials=2, url=proxy.url(POSTGRES_URL), extra=("--db-wait", "2"))
    assert workers.wait(timeout=120) == [3], workers.logs()
    assert "error: cannot open storage" in workers.logs()


def test_sigterm_during_an_outage_exits_zero_and_the_trial_resumes_elsewhere(
    make_study, workers: Workers, proxy: TcpProxy, tmp_path: Path
) -> None:
    study, name = make_study(epochs="3", rows=900)
    proxy.restore()
    first = workers.start(study, trials=2, url=proxy.url(POSTGRES_URL))
    victim = _wait_for(name, lambda t: t.state == TrialState.RUNNING and 1 in t.intermediate_values)
    proxy.cut()  # the database is gone for this worker (its beats and writes all fail)
    first.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert first.wait(timeout=60) == 0, workers.logs()
    assert time.monotonic() - sent < 30, workers.logs()
    # The trial could not be recorded: RUNNING in the database, its checkpoint on disk.
    (trial,) = [t for t in _trials(name) if t.number == victim.number]
    assert trial.state == TrialState.RUNNING
    assert list((tmp_path / "checkpoints").rglob("latest.json")), workers.logs()
    # The next worker (reaching the database) finds it lost and resumes it from there.
    workers.start(study, trials=2)
    assert workers.wait(timeout=300) == [0, 0], workers.logs()
    trials = _trials(name)
    _check_complete_history(trials, 2)
    lost = next(t for t in trials if t.number == victim.number)
    assert lost.user_attrs["end_reason"] == "worker-lost"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] >= 1


def test_a_killed_worker_is_found_while_every_other_worker_is_busy(
    make_study, workers: Workers
) -> None:
    """Lost workers are looked for from the heartbeat thread of every running trial: found
    within the grace period, not when a neighbour happens to finish its (long) trial."""
    study, name = make_study(epochs="60", rows=600)
    for _ in range(2):
        workers.start(study, trials=2, heartbeat=1.0)
    _wait_for(
        name,
        lambda t: t.state == TrialState.RUNNING and 1 in t.intermediate_values,
    )
    running = _wait_for_count(name, TrialState.RUNNING, 2)
    victim, busy = running
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    lost = _wait_for(
        name,
        lambda t: t.number == victim.number and t.state == TrialState.FAIL,
        timeout=60,
    )
    assert lost.user_attrs["end_reason"] == "worker-lost"
    # Its neighbour was still in its own trial the whole time: it did not claim anything.
    (neighbour,) = [t for t in _trials(name) if t.number == busy.number]
    assert neighbour.state == TrialState.RUNNING, workers.logs()
    assert max(neighbour.intermediate_values, default=0) < 60


def _wait_for_count(name: str, state: TrialState, count: int, timeout: float = 120.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = [t for t in _trials(name) if t.state == state]
        if len(trials) >= count:
            return trials[:count]
        time.sleep(0.2)
    raise AssertionError(f"{name} never had {count} {state.name} trials")
