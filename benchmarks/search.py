"""Search that spends less compute: sweep's default search against random search (issue 7).

    python benchmarks/search.py --data ../shared/data/sst2 --limit-train 8000 --seeds 5
    python benchmarks/search.py --build-table PATH --data ../shared/data/sst2 --limit-train 8000

Both sides search the space of studies/sst2.yaml — learning rate (log range 1e-4..3e-3), batch
size (16, 32, 64), epochs (1..4) and model size (nano, micro, mini) — for the same number of
trials, one worker each (with --lr-values the learning rate is searched among the table's four
values instead, a finite space where sweep's samplers repeat no configuration):
  default  the sampler and pruner sweep builds from a study config that names neither
           (sweep.search.make_sampler / make_pruner: TPE multivariate + Hyperband over epochs)
  random   the same config with `sampler: random` and `pruner: none`
Per seed, random search's final best validation loss is the target; time_to_target_ratio is the
training seconds the default spent until its first complete trial reached that target, divided
by all the seconds random search spent. Averaged over the seeds (0..N-1, or N from
--first-seed on); target: <= 0.4. It is null when the default missed the target on some seed:
`seeds_reached` says on how many it made it, and `time_to_target_ratio_lower_bound` counts a
miss as all the seconds that seed spent. Prints one JSON line: the ratio, each side's final
best, compute, and per-seed figures with the best-so-far curves as [cumulative training
seconds, best val_loss] points. `--curves FILE` writes every replayed trial.

How it avoids a hundred real fine-tunes per seed (as Syne Tune's simulator and tabular
benchmarks do): the space is discretised — `--lrs` learning rates (the log-space centres of equal
bins of the range) x the batch sizes x the model sizes — and `--build-table` fine-tunes every
configuration ONCE, for the largest epochs value (4), with sweep's own data loading, model ladder
and training loop, storing each epoch's validation loss, accuracy and wall seconds (training +
evaluation) in a JSON table (rewritten after every configuration: a stopped build goes on where it
stopped). The replay then runs real Optuna studies against the table: a trial's learning rate is
snapped to its bin's grid value, a trial with epochs=k reads the first k epochs of its row, and
its cost is the sum of the seconds of the epochs it actually ran before completing or being
pruned. Replays are deterministic for a seed.

Known simplification: the learning rate decays linearly to 0 over a run's own epochs (after 10%
warm-up), so a real 2-epoch trial ends with a decayed learning rate, while its replay is the first
2 epochs of a 4-epoch run whose learning rate is still high. Replayed values are exact for trials
that sample epochs=4 (pruned or not) and approximate for shorter ones, which look somewhat worse
than they would train, on both sides alike. Training every epochs value separately would remove
this at 2.5x the build's compute (1+2+3+4 epochs instead of 4), which does not fit a GPU
session's 10 minutes, so the table does not.

A table is named after the data, --limit-train and --max-length. A build writes it to
$SWEEP_CACHE_DIR/benchmarks/ (else ~/.cache/sweep/benchmarks/); the replay reads it from there,
else from benchmarks/tables/, where the repository ships the SST-2 table of the command above
(35 KB: 36 configurations x 4 epochs fine-tuned on an NVIDIA H100 in 590 s of training, with
benchmarks/gpu_search_table.sh's build command). A table records how it was made: data path and
content hash, rows, settings, device, versions, host, dates, command.

Besides the two sides, the JSON line has the same figures, against the same targets, for two
more: `random_hyperband`, random sampling with the default pruner, which tells the sampler's share
of the result from the pruner's; and `random_rerun`, random search without pruning run again with
another seed, which is what luck alone scores: where the table's best configurations differ by
less than training noise, even random search needs about half its compute to find its own best
again. Every side of every replay seed samples with a seed of its own (see
_search_replay.side_seed): sides that shared one would share their first draws.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _search_table import (
    BATCH_SIZES,
    LR_RANGE,
    MAX_EPOCHS,
    MAX_LENGTH,
    MODEL_SIZES,
    TableError,
    TableSpec,
    build_table,
    default_table_path,
    load_table,
    missing_configs,
)

from sweep.config import PRUNER_SETTINGS
from sweep.errors import SweepError

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
# Tables that ship with the repository (small JSON files), so the replay needs no GPU.
TABLES_DIR = Path(__file__).resolve().parent / "tables"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _range(text: str) -> tuple[float, float]:
    low, high = (float(v) for v in text.split(","))
    return low, high


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with train.csv and "
        "validation.csv (default: ../shared/data/sst2 beside the repository)",
    )
    p.add_argument("--limit-train", type=int, default=8000, help="train rows (stratified)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help="tokens per text")
    p.add_argument(
        "--table",
        type=Path,
        default=None,
        help="table to replay (default: the one for --data/--limit-train/--max-length)",
    )
    p.add_argument("--seeds", type=int, default=5, help="replay N seeds, from --first-seed on")
    p.add_argument("--first-seed", type=int, default=0, help="the first replay seed (default 0)")
    p.add_argument("--trials", type=int, default=50, help="trials per side and seed")
    p.add_argument(
        "--lr-values",
        action="store_true",
        help="search the table's learning rates as values (a finite space) instead of the range",
    )
    p.add_argument(
        "--pruner",
        default=None,
        choices=sorted(PRUNER_SETTINGS),
        help="the pruner of the default and random_hyperband sides, e.g. successive_halving"
        " (default: sweep's, Hyperband)",
    )
    p.add_argument("--curves", type=Path, default=None, help="write every replayed trial here")
    build = p.add_argument_group("building a table (real fine-tunes)")
    build.add_argument(
        "--build-table",
        type=Path,
        default=None,
        metavar="PATH",
        help="fine-tune the grid into PATH (resumes a stopped build)",
    )
    build.add_argument("--sizes", type=_names, default=MODEL_SIZES, help="model sizes, a,b,c")
    build.add_argument("--batch-sizes", type=_ints, default=BATCH_SIZES, help="e.g. 16,32,64")
    build.add_argument("--lr-range", type=_range, default=LR_RANGE, help="low,high (log range)")
    build.add_argument("--lrs", type=int, default=4, help="learning rates in the grid")
    build.add_argument("--epochs", type=int, default=MAX_EPOCHS, help="epochs per fine-tune")
    build.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if any)")
    build.add_argument("--cache-dir", type=Path, default=None, help="sweep's tokenizer cache")
    build.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="start no new configuration after this many seconds",
    )
    args = p.parse_args(argv)
    if args.seeds < 1 or args.trials < 1:
        p.error("--seeds and --trials must be >= 1")
    return args


def find_table(args: argparse.Namespace) -> Path:
    """The table for --data/--limit-train/--max-length: one built here (the cache), else the one
    the repository ships (benchmarks/tables/, made on a GPU), else the cache path to build."""
    built = default_table_path(args.data, args.limit_train, args.max_length)
    shipped = TABLES_DIR / built.name
    return shipped if not built.exists() and shipped.exists() else built


def build_command(args: argparse.Namespace, path: Path) -> str:
    """The command that builds (or resumes) the table the replay looked for."""
    return (
        f"python benchmarks/search.py --build-table {path} --data {args.data}"
        f" --limit-train {args.limit_train} --max-length {args.max_length}"
    )


def run_build(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Build or resume the table; returns the JSON line's content."""
    spec = TableSpec(
        data_dir=args.data,
        limit_train=args.limit_train,
        max_length=args.max_length,
        model_sizes=args.sizes,
        batch_sizes=args.batch_sizes,
        lr_range=args.lr_range,
        n_lrs=args.lrs,
        epochs=args.epochs,
    )
    table = build_table(
        args.build_table,
        spec,
        device=args.device,
        cache_dir=args.cache_dir,
        budget_seconds=args.budget_seconds,
        command=["python", "benchmarks/search.py", *argv],
    )
    return {
        "benchmark": "search-table",
        "table": str(args.build_table),
        "rows": len(table["rows"]),
        "missing": len(missing_configs(table)),
        "device": table["made"]["device"],
        "build_seconds": table["made"]["build_seconds"],
    }


def run_replay(args: argparse.Namespace) -> dict[str, Any]:
    """Replay both sides for every seed; returns the JSON line's content."""
    from _search_replay import SIDES, check_complete, compare, replay, summarize, table_best

    path = args.table or find_table(args)
    if not path.exists():
        raise TableError(
            f"no search table at {path}; build one with: {build_command(args, path)}"
            " (hours on a CPU, minutes on a GPU: benchmarks/gpu_search_table.sh)"
        )
    table = load_table(path)
    check_complete(table, str(path))
    runs = {
        seed: {
            side: replay(table, side, seed, args.trials, args.lr_values, args.pruner)
            for side in SIDES
        }
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    }
    per_seed = [compare(r["default"], r["random"]) for r in runs.values()]

    def against_random(side: str) -> dict[str, Any]:
        """Another side's figures against the same targets, its keys named after it."""
        per_seed_side = [compare(r[side], r["random"]) for r in runs.values()]
        return {
            # summarize() names the side it compares with random search "default".
            k.replace("default_", f"{side}_"): v
            for k, v in summarize(per_seed_side).items()
        } | {"per_seed_ratio": [s["time_to_target_ratio"] for s in per_seed_side]}

    if args.curves is not None:
        args.curves.write_text(
            json.dumps(
                {
                    str(seed): {side: [asdict(t) for t in run.trials] for side, run in r.items()}
                    for seed, r in runs.items()
                }
            )
            + "\n"
        )
    made = table["made"]
    return {
        "benchmark": "search",
        **summarize(per_seed),
        "target": 0.4,
        "trials": args.trials,
        "lr_values": args.lr_values,
        "pruner": args.pruner or "hyperband",
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "table": str(path),
        "table_made": {
            k: made.get(k)
            for k in (
                "data",
                "train_rows",
                "validation_rows",
                "limit_train",
                "max_length",
                "device",
                "versions",
                "updated",
                "build_seconds",
            )
        },
        "grid": table["grid"],
        "table_best": table_best(table),
        # Random sampling with the default pruner: the pruner's share without the sampler's.
        "random_hyperband": against_random("random_hyperband"),
        # Random search run again (another seed): the ratio that luck alone scores.
        "random_rerun": against_random("random_rerun"),
        "per_seed": per_seed,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse, then build a table or replay one; prints one JSON line. A table that is missing,
    incomplete or does not fit the build is one `error:` line on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        out = run_build(args, argv) if args.build_table is not None else run_replay(args)
    except (TableError, SweepError) as exc:
        # A missing table or bad data is the user's to fix: one line, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "stopped; the table keeps every finished configuration: run again to go on",
            file=sys.stderr,
        )
        return 130
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
