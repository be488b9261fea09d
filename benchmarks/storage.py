"""Many workers on one study: sweep's trial loop against Optuna's defaults, in the same run.

    python benchmarks/storage.py --storage postgresql+psycopg://sweep:sweep@127.0.0.1/sweep_test \
        --workers 16 --trials 400

K worker processes run a trivial objective (two floats suggested, 10 intermediate values
reported, a pruning check after each) until the study has --trials finished trials: first with
sweep (sweep.runner.Session: budget claims under a study lock, heartbeats, retried storage
calls), then with Optuna's RDB storage at its default settings (no heartbeat; an ask/tell loop
that stops as MaxTrialsCallback does: after its own trial, once enough trials have finished).
Both sides use the same sampler (TPESampler, seeded) and pruner (MedianPruner): what differs
is the storage and coordination.

Prints one JSON line: per side trials_per_s, worker_cpu_ms_per_trial (CPU time of the worker
processes over finished trials, start-up excluded), p50/p95 ms of ask/report/tell, errors
(workers that crashed), lost (trials left RUNNING/WAITING or told finished but not stored),
duplicates (trials stored that no worker finished, or finished by two), overshoot (finished
trials beyond the budget), statements_per_trial (SQL statements the workers sent, start-up
included: a figure that the machine's load does not blur); and ratio_cpu = ours / optuna's
worker CPU per trial.

SWEEP_BENCH_PROFILE=DIR profiles every worker with cProfile into DIR (slows both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

STEPS = 10
WORKER_TIMEOUT_S = 1800


def _objective_steps(trial: optuna.Trial, times: dict[str, list[float]]) -> float:
    """The trivial objective: suggest, then report 10 values with a pruning check after each."""
    start = time.perf_counter()
    x = trial.suggest_float("x", -1.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    times["suggest"].append(time.perf_counter() - start)
    value = 0.0
    for step in range(1, STEPS + 1):
        value = x * x + y / step
        start = time.perf_counter()
        trial.report(value, step)
        prune = trial.should_prune()
        times["report"].append(time.perf_counter() - start)
        if prune:
            raise optuna.TrialPruned()
    return value


def _sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


# -- one worker process ---------------------------------------------------------------------------


def run_ours(url: str, study_name: str, trials: int, seed: int) -> dict[str, Any]:
    """One sweep worker: sweep.runner.Session around the trivial objective."""
    from sweep.runner import InterruptGate, Session
    from sweep.storage import open_storage

    times: dict[str, list[float]] = {"ask": [], "suggest": [], "report": [], "tell": []}
    finished: list[int] = []

    class Objective:
        """What Session needs of sweep.runner.Objective, around the trivial function."""

        def __init__(self) -> None:
            self.gate = InterruptGate()
            self.preempt = threading.Event()
            self.artifacts_dir = Path(tempfile.gettempdir()) / "sweep-bench-none"
            self.keep_best = 0
            self.current_trial: optuna.Trial | None = None
            self.train_seconds = 0.0
            self.trials_run = 0

        def __call__(self, trial: optuna.Trial) -> float:
            self.trials_run += 1
            trial.set_user_attr("worker", str(os.getpid()))
            return _objective_steps(trial, times)

    class TimedSession(Session):
        def _claim(self) -> Any:
            start = time.perf_counter()
            claim = super()._claim()
            if claim.trial_id is not None:
                times["ask"].append(time.perf_counter() - start)
            return claim

        def _tell(self, trial: Any, state: Any, value: Any) -> Any:
            start = time.perf_counter()
            frozen = super()._tell(trial, state, value)
            times["tell"].append(time.perf_counter() - start)
            if frozen is not None:
                finished.append(frozen.number)
            return frozen

    storage = open_storage(url)
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=_sampler(seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    cpu = time.process_time()
    TimedSession(study, Objective(), n_trials=trials, heartbeat_interval=20).run()
    return {"cpu_s": time.process_time() - cpu, "finished": finished, "times": times}


def run_optuna(url: str, study_name: str, trials: int, seed: int) -> dict[str, Any]:
    """One plain Optuna worker: default RDB storage, an ask/tell loop, MaxTrialsCallback's stop."""
    times: dict[str, list[float]] = {"ask": [], "suggest": [], "report": [], "tell": []}
    finished: list[int] = []
    study = optuna.load_study(
        study_name=study_name,
        storage=url,
        sampler=_sampler(seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    cpu = time.process_time()
    while len(study.get_trials(deepcopy=False, states=finished_states)) < trials:
        start = time.perf_counter()
        trial = study.ask()
        times["ask"].append(time.perf_counter() - start)
        try:
            value: float | None = _objective_steps(trial, times)
            state = TrialState.COMPLETE
        except optuna.TrialPruned:
            value, state = None, TrialState.PRUNED
        start = time.perf_counter()
        frozen = study.tell(trial, value, state=state)
        times["tell"].append(time.perf_counter() - start)
        finished.append(frozen.number)
    return {"cpu_s": time.process_time() - cpu, "finished": finished, "times": times}


# -- the driver -----------------------------------------------------------------------------------


def _side(url: str, kind: str, workers: int, trials: int, tmp: Path) -> dict[str, Any]:
    name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name=name, storage=storage)
    storage.engine.dispose()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    processes = []
    for index in range(workers):
        out = tmp / f"{kind}-{index}.json"
        processes.append(
            (
                out,
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        kind,
                        "--storage",
                        url,
                        "--study",
                        name,
                        "--trials",
                        str(trials),
                        "--seed",
                        str(index),
                        "--out",
                        str(out),
                    ],
                    env=env,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    results, errors, messages = [], 0, []
    for out, process in processes:
        _, stderr = process.communicate(timeout=WORKER_TIMEOUT_S)
        if process.returncode != 0 or not out.exists():
            errors += 1
            messages.append(stderr.decode(errors="replace").strip().splitlines()[-1:])
            continue
        results.append(json.loads(out.read_text()))
    wall = time.perf_counter() - started

    stored = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    finished_rows = {t.number for t in stored if t.state.is_finished()}
    told = [n for r in results for n in r["finished"]]
    lost = sum(1 for t in stored if t.state in (TrialState.RUNNING, TrialState.WAITING))
    lost += len(set(told) - finished_rows)
    duplicates = (len(told) - len(set(told))) + len(finished_rows - set(told))
    cpu = sum(r["cpu_s"] for r in results)

    def ms(key: str, q: float) -> float | None:
        values = [v for r in results for v in r["times"][key]]
        return round(1000 * float(np.percentile(values, q)), 2) if values else None

    side: dict[str, Any] = {
        "study": name,
        "finished": len(finished_rows),
        "wall_s": round(wall, 2),
        "trials_per_s": round(len(finished_rows) / wall, 3),
        "worker_cpu_ms_per_trial": round(1000 * cpu / max(1, len(finished_rows)), 2),
        "statements_per_trial": round(
            sum(r["statements"] for r in results) / max(1, len(finished_rows)), 1
        ),
        "errors": errors,
        "lost": lost,
        "duplicates": duplicates,
        "overshoot": max(0, len(finished_rows) - trials),
    }
    for key in ("ask", "report", "tell"):
        side[f"{key}_p50_ms"] = ms(key, 50)
        side[f"{key}_p95_ms"] = ms(key, 95)
    if messages:
        side["error_messages"] = messages[:3]
    return side


def _count_statements() -> list[int]:
    """A counter of the SQL statements this process sends (all engines, heartbeats included)."""
    import sqlalchemy

    count = [0]

    def counted(*_: Any) -> None:
        count[0] += 1

    sqlalchemy.event.listen(sqlalchemy.Engine, "before_cursor_execute", counted)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="database URL (PostgreSQL or SQLite)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--sides", default="ours,optuna", help="which sides to run, in order")
    parser.add_argument("--worker", choices=("ours", "optuna"), help=argparse.SUPPRESS)
    parser.add_argument("--study", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    if args.worker:
        run = run_ours if args.worker == "ours" else run_optuna
        statements = _count_statements()
        profile_dir = os.environ.get("SWEEP_BENCH_PROFILE")
        if profile_dir:  # where a worker's CPU goes: one pstats file per worker process
            import cProfile

            profiler = cProfile.Profile(time.process_time)
            result = profiler.runcall(run, args.storage, args.study, args.trials, args.seed)
            profiler.dump_stats(Path(profile_dir) / f"{args.worker}-{args.seed}.pstats")
        else:
            result = run(args.storage, args.study, args.trials, args.seed)
        result["statements"] = statements[0]
        args.out.write_text(json.dumps(result))
        return

    report: dict[str, Any] = {
        "storage": args.storage.split("://")[0],
        "workers": args.workers,
        "trials": args.trials,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.sides.split(","):
            report[kind] = _side(args.storage, kind, args.workers, args.trials, Path(tmp))
    if "ours" in report and "optuna" in report:
        report["ratio_cpu"] = round(
            report["ours"]["worker_cpu_ms_per_trial"] / report["optuna"]["worker_cpu_ms_per_trial"],
            3,
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
