"""`sweep report` on a large study: wall time and file size. Prints one JSON line.

Builds a study of --trials trials (60 % complete, 30 % pruned at a random epoch, 10 % failed, on
4 workers), each with --epochs intermediate values and the user attributes `sweep run` writes
(epoch history, timing, device...), in a SQLite file in a temporary directory; no training.
Then times the command as a user runs it, in a fresh process (interpreter start and imports
included):

    python benchmarks/report.py --trials 1000 --epochs 10

Target: under 10 s and under 10 MB. For context, `baseline_status_seconds` is `sweep status
--json` on the same study: the same storage read, with nothing drawn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from sweep.storage import close_storage, open_storage

LIMIT_SECONDS = 10.0
LIMIT_BYTES = 10_000_000
SIZES = ("nano", "micro", "mini")


def build_study(url: str, name: str, trials: int, epochs: int, seed: int = 0) -> None:
    """A study shaped like one `sweep run` writes, with made-up but plausible numbers."""
    rng = random.Random(seed)
    # sweep's own storage settings (SQLite in WAL mode, no fsync per commit), as `sweep run`.
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_user_attr("metric", "val_loss")
    study.set_user_attr("data_source", "benchmark (synthetic)")
    study.set_user_attr("label_names", ["negative", "positive"])
    study.set_user_attr("config", {"models": {s: {} for s in SIZES}})
    dists = {
        "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "epochs": optuna.distributions.IntDistribution(1, epochs),
        "model_size": optuna.distributions.CategoricalDistribution(list(SIZES)),
    }
    workers = [f"node{i}:{1000 + i}" for i in range(4)]
    clock = dict.fromkeys(workers, dt.datetime(2026, 1, 1, 9, 0, 0))
    frozen = []
    for number in range(trials):
        lr = 10 ** rng.uniform(-5, -2)
        size = rng.choice(SIZES)
        # Best near lr 1e-3.5, larger sizes a little better, noise on top.
        floor = 0.3 + 0.08 * abs(rng.gauss(0, 1)) + 0.05 * abs(-3.5 - math.log10(lr))
        floor -= 0.03 * SIZES.index(size)
        roll = rng.random()
        state = "COMPLETE" if roll < 0.6 else "PRUNED" if roll < 0.9 else "FAIL"
        run = epochs if state == "COMPLETE" else rng.randint(1, epochs)
        losses = [floor + 0.5 * 0.6 ** (e + 1) + rng.gauss(0, 0.005) for e in range(run)]
        per_epoch = rng.uniform(5, 30) * (1 + SIZES.index(size))
        history = [
            {
                "epoch": e + 1,
                "train_loss": loss + 0.05,
                "val_loss": loss,
                "val_accuracy": 1 - loss / 2,
                "seconds": per_epoch,
            }
            for e, loss in enumerate(losses)
        ]
        worker = rng.choice(workers)
        attrs = {
            "worker": worker,
            "seed": number,
            "checkpoint_of": number,
            "epochs_run": run,
            "epoch_history": history,
            "device": "cpu (2 threads)",
        }
        if state == "FAIL":
            attrs.update(
                end_reason="error", error="RuntimeError: made-up failure for the benchmark"
            )
        else:
            best = min(range(run), key=lambda k: losses[k])
            attrs.update(
                end_reason="complete" if state == "COMPLETE" else "stopped",
                best_epoch=best + 1,
                train_seconds=per_epoch * run,
                samples_per_s=1000.0,
                tokens_per_s=30000.0,
                peak_memory_mb=900.0,
                n_params=1_000_000 * (1 + SIZES.index(size)),
                micro_batch=32,
                micro_batch_halvings=0,
                val_loss=losses[best],
                val_accuracy=1 - losses[best] / 2,
            )
            if state == "PRUNED":
                attrs["pruned_at_epoch"] = run
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState[state],
            value=min(losses) if state == "COMPLETE" else None,
            params={
                "learning_rate": lr,
                "batch_size": rng.choice([16, 32, 64]),
                "epochs": epochs,
                "model_size": size,
            },
            distributions=dists,
            user_attrs=attrs,
            intermediate_values={e + 1: loss for e, loss in enumerate(losses)},
        )
        start = clock[worker] + dt.timedelta(seconds=rng.uniform(0.5, 5))
        trial.datetime_start = start
        trial.datetime_complete = start + dt.timedelta(seconds=per_epoch * run + 1)
        clock[worker] = trial.datetime_complete
        frozen.append(trial)
    study.add_trials(frozen)
    close_storage(storage)


def _sweep(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    code = "import sys; from sweep.cli import main; sys.argv[0] = 'sweep'; main()"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sweep {' '.join(args)} failed:\n{done.stderr}")
    return seconds, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="write the study and report here instead")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'bench.db'}"
        report = folder / "report.html"
        started = time.perf_counter()
        build_study(url, "bench", args.trials, args.epochs)
        build_seconds = time.perf_counter() - started

        status_seconds, _ = _sweep("status", "bench", "--json", "--storage", url)
        seconds, _ = _sweep("report", "bench", "-o", str(report), "--storage", url)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        size = report.stat().st_size

    from plotly.offline import get_plotlyjs

    print(
        json.dumps(
            {
                "trials": args.trials,
                "epochs": args.epochs,
                "seconds": round(seconds, 2),
                "bytes": size,
                "plotlyjs_bytes": len(get_plotlyjs().encode()),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "baseline_status_seconds": round(status_seconds, 2),
                "build_seconds": round(build_seconds, 1),
                "under_limits": seconds < LIMIT_SECONDS and size < LIMIT_BYTES,
            }
        )
    )


if __name__ == "__main__":
    main()
