"""How much a configuration's validation loss moves with the training seed alone.

    python benchmarks/seed_noise.py --data ../shared/data/sst2 --sizes nano --batch-sizes 64 \\
        --epochs 2 --seeds 4 --device cpu

Fine-tunes every configuration of a small grid (the search benchmark's learning rates x the given
sizes and batch sizes) once per training seed, with the search benchmark's table builder, and
prints one JSON line: per configuration the best-epoch validation loss of each seed, their
standard deviation and range; and, beside them, how far apart the ten best configurations of the
search benchmark's shipped table are. Where a seed moves one configuration as much as the ten
best differ, no sampler can tell those ten apart from one fine-tune each. Tables are written to
--out (one per seed) and resumed from there. About 2 minutes on 2 CPU cores for the command above.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from _search_table import LR_RANGE, TableSpec, build_table, load_table

SHIPPED = Path(__file__).resolve().parent / "tables" / "search-sst2-limit8000-len64.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def top_span(table: dict[str, Any], n: int = 10) -> float:
    """Best-epoch validation loss of the n-th best configuration minus that of the best."""
    best = sorted(min(e["val_loss"] for e in row["epochs"]) for row in table["rows"])
    return best[min(n, len(best)) - 1] - best[0]


def main(argv: list[str] | None = None) -> int:
    """Parse, fine-tune every configuration once per seed, print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit-train", type=int, default=8000, help="train rows (0: all)")
    p.add_argument("--sizes", default="nano", help="model sizes, a,b")
    p.add_argument("--batch-sizes", default="64", help="e.g. 32,64")
    p.add_argument("--lrs", type=int, default=4, help="learning rates of the range's grid")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=4, help="training seeds 0..N-1")
    p.add_argument("--device", default=None, help="cuda, cpu (default: cuda if any)")
    p.add_argument("--out", type=Path, default=Path(".seed-noise"), help="tables go here")
    p.add_argument("--cache-dir", type=Path, default=None, help="sweep's tokenizer cache")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be >= 2")

    args.out.mkdir(parents=True, exist_ok=True)
    losses: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        spec = TableSpec(
            data_dir=args.data,
            limit_train=args.limit_train or None,
            model_sizes=tuple(args.sizes.split(",")),
            batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
            lr_range=LR_RANGE,
            n_lrs=args.lrs,
            epochs=args.epochs,
            seed=seed,
        )
        table = build_table(
            args.out / f"seed{seed}.json", spec, device=args.device, cache_dir=args.cache_dir
        )
        for row in table["rows"]:
            key = f"{row['model_size']}/{row['batch_size']}/{row['learning_rate']:g}"
            losses.setdefault(key, []).append(min(e["val_loss"] for e in row["epochs"]))
    configs = {
        key: {
            "val_loss": [round(v, 4) for v in values],
            "std": statistics.stdev(values),
            "range": max(values) - min(values),
        }
        for key, values in losses.items()
    }
    out = {
        "benchmark": "seed-noise",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "configs": configs,
        "mean_std": statistics.fmean(c["std"] for c in configs.values()),
        "mean_range": statistics.fmean(c["range"] for c in configs.values()),
        "shipped_table_top10_span": top_span(load_table(SHIPPED)) if SHIPPED.exists() else None,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
