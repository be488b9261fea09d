"""`sweep launch slurm --submit` on a real one-node Slurm cluster (slurmctld + slurmd + munge).

The job runs two CPU `sweep worker` tasks on a copy of the bundled demo study against the test
PostgreSQL; Optuna then says whether the study reached its budget. A second job gets the TERM
that `--signal=B:TERM@...` sends ahead of the time limit (scancel --batch --signal=TERM is the
same signal to the same process, without waiting for a limit): its workers checkpoint, the job
requeues itself and the study still ends with exactly its budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sweep.config import bundled_demo_path
from tests.launch import slurm_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES_URL")
SWEEP_BIN = Path(sys.executable).parent  # `sweep` is installed next to this Python


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurm_cluster.SlurmCluster]:
    """A one-node cluster for this module's tests, stopped at the end."""
    reason = slurm_cluster.unavailable()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    running = slurm_cluster.start_cluster(tmp_path_factory.mktemp("slurm"))
    print(f"slurm cluster up in {time.monotonic() - started:.1f} s")
    yield running
    running.stop()


@pytest.fixture
def postgres_url() -> str:
    if not POSTGRES_URL:
        pytest.skip("SWEEP_TEST_POSTGRES_URL not set (.ci/run starts PostgreSQL and sets it)")
    return POSTGRES_URL


def _demo_copy(directory: Path) -> tuple[Path, str]:
    """The bundled demo study under a unique name (the test database is shared), made smaller:
    400 rows, the nano model, 1-2 epochs, so that a trial takes seconds on a busy CPU."""
    name = f"slurm-{uuid.uuid4().hex[:10]}"
    config = yaml.safe_load(bundled_demo_path().read_text())
    config["name"] = name
    config.pop("storage", None)
    config["data"]["demo_size"] = 400
    config["parameters"]["model_size"] = {"values": ["nano"]}
    config["parameters"]["epochs"] = {"min": 1, "max": 2}
    path = directory / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, name


def _launch_env(cluster: slurm_cluster.SlurmCluster, tmp_path: Path) -> dict[str, str]:
    env = dict(cluster.env)
    env["PATH"] = f"{SWEEP_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SWEEP_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("SWEEP_STORAGE", None)
    return env


def _submit(
    cluster: slurm_cluster.SlurmCluster, tmp_path: Path, study: Path, url: str, trials: int
) -> str:
    """`sweep launch slurm ... --submit`, as a user runs it; returns the job id."""
    done = subprocess.run(
        [
            str(SWEEP_BIN / "sweep"),
            "launch",
            "slurm",
            str(study),
            "--storage",
            url,
            "--gpus-per-node",
            "0",
            "--workers-per-node",
            "2",
            "--trials",
            str(trials),
            "--checkpoint-dir",
            str(tmp_path / "checkpoints"),
            "--artifacts-dir",
            str(tmp_path / "artifacts"),
            "--log-dir",
            str(tmp_path / "logs"),
            "--submit",
        ],
        env=_launch_env(cluster, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert job_id.isdigit(), done.stdout
    return job_id


def _trials(url: str, name: str) -> list:
    import optuna

    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted((tmp_path / "logs").glob("*.out"))
    )


def test_a_two_task_job_runs(cluster: slurm_cluster.SlurmCluster, tmp_path: Path) -> None:
    """The cluster itself: a plain 2-task job, one srun step, each task its own rank."""
    script = tmp_path / "hello.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --ntasks=2\n"
        f"#SBATCH --output={tmp_path}/hello-%j.out\n"
        f'srun --output="{tmp_path}/hello-%j-%t.out" bash -c \'echo "rank $SLURM_PROCID"\'\n'
    )
    job_id = cluster.run("sbatch", "--parsable", str(script)).strip()
    info = cluster.wait(job_id, timeout=60, poll=0.3)
    assert info["JobState"] == "COMPLETED", cluster.log("slurmd")
    ranks = sorted((tmp_path / f"hello-{job_id}-{t}.out").read_text().strip() for t in (0, 1))
    assert ranks == ["rank 0", "rank 1"]


def test_two_workers_reach_the_budget(
    cluster: slurm_cluster.SlurmCluster, tmp_path: Path, postgres_url: str
) -> None:
    import optuna

    study, name = _demo_copy(tmp_path)
    started = time.monotonic()
    job_id = _submit(cluster, tmp_path, study, postgres_url, trials=4)
    info = cluster.wait(job_id, timeout=420)
    elapsed = time.monotonic() - started
    print(f"job {job_id}: {info['JobState']} in {elapsed:.1f} s")
    assert info["JobState"] == "COMPLETED", _logs(tmp_path)
    assert info["ExitCode"] == "0:0", _logs(tmp_path)

    trials = _trials(postgres_url, name)
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) == 4, [(t.number, t.state, t.user_attrs.get("end_reason")) for t in trials]
    assert all(
        t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        for t in finished
    )
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    # One log per task, both from this job.
    logs = sorted(p.name for p in (tmp_path / "logs").glob(f"*-{job_id}-task*.out"))
    assert logs == [f"sweep-{name}-{job_id}-task0.out", f"sweep-{name}-{job_id}-task1.out"]
    # Each worker recorded its trials as host:pid; two tasks, two processes (one may have
    # found the budget spent before it got a trial, so at least one).
    workers = {t.user_attrs.get("worker") for t in finished}
    assert 1 <= len(workers) <= 2, workers


def test_term_before_the_time_limit_requeues_and_the_study_finishes(
    cluster: slurm_cluster.SlurmCluster, tmp_path: Path, postgres_url: str
) -> None:
    from sweep.study import counts_towards_budget

    study, name = _demo_copy(tmp_path)
    budget = 4
    job_id = _submit(cluster, tmp_path, study, postgres_url, trials=budget)

    # Wait until a worker is inside a trial, then send the batch shell the TERM that
    # --signal=B:TERM@120 sends two minutes before the time limit.
    deadline = time.monotonic() + 240
    while True:
        try:
            running = [t for t in _trials(postgres_url, name) if t.state.name == "RUNNING"]
        except KeyError:  # the study is not created yet
            running = []
        if running:
            break
        assert time.monotonic() < deadline, f"no trial started\n{_logs(tmp_path)}"
        assert cluster.job(job_id)["JobState"] in ("PENDING", "RUNNING"), _logs(tmp_path)
        time.sleep(0.5)
    cluster.run("scancel", "--batch", "--signal=TERM", job_id)

    # The job requeues itself, runs again (its workers resume the preempted trials) and ends.
    deadline = time.monotonic() + 480
    while True:
        info = cluster.job(job_id)
        if info["JobState"] in slurm_cluster.FINAL_STATES and int(info.get("Restarts", 0)) >= 1:
            break
        if info["JobState"] in slurm_cluster.FINAL_STATES:
            pytest.fail(f"job ended without a requeue: {info['JobState']}\n{_logs(tmp_path)}")
        assert time.monotonic() < deadline, f"job still {info['JobState']}\n{_logs(tmp_path)}"
        time.sleep(1)
    assert info["JobState"] == "COMPLETED", _logs(tmp_path)
    assert info["Restarts"] == "1"

    trials = _trials(postgres_url, name)
    assert sum(counts_towards_budget(t) for t in trials) == budget
    preempted = [t for t in trials if t.user_attrs.get("end_reason") == "preempted"]
    assert preempted, [(t.number, t.state, t.user_attrs.get("end_reason")) for t in trials]
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    batch_log = next((tmp_path / "logs").glob(f"sweep-{name}-{job_id}.out")).read_text()
    assert "sweep: TERM at" in batch_log
