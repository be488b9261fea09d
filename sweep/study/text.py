"""Plain-text renderings of study rows: numbers, parameters, the best-trial and overhead lines.

Shared by the CLI (which draws them with Rich, as text, never as markup) and the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "best_line",
    "dropped_text",
    "fmt_epochs",
    "fmt_number",
    "fmt_params",
    "fmt_worker",
    "overhead_line",
    "pareto_line",
]


def fmt_number(value: Any) -> str:
    """A compact rendering: 4 significant digits for floats, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


_SHORT = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "epochs": "epochs",
    "model_size": "size",
    "weight_decay": "wd",
    "warmup_ratio": "warmup",
}


def fmt_params(params: Mapping[str, Any]) -> str:
    """Parameters as `lr=3.1e-04 batch=32 ...`, in a stable order."""
    order = list(_SHORT)
    keys = sorted(params, key=lambda k: (order.index(k) if k in order else len(order), k))
    return " ".join(f"{_SHORT.get(k, k)}={fmt_number(params[k])}" for k in keys)


def fmt_epochs(row: Mapping[str, Any]) -> str:
    """`best/run` epochs, e.g. `2/3`."""
    if row.get("best_epoch") is None and row.get("epochs_run") is None:
        return "-"
    return f"{fmt_number(row.get('best_epoch'))}/{fmt_number(row.get('epochs_run'))}"


def fmt_worker(row: Mapping[str, Any]) -> str:
    """`host:pid`, plus the GPU it saw (`gpu 3`), or "-" for a trial no worker has run."""
    worker = row.get("worker")
    if not worker:
        return "-"
    return f"{worker} gpu {row['gpu']}" if row.get("gpu") not in (None, "") else str(worker)


def dropped_text(count: int) -> str:
    """`12 rows with empty text were dropped (not trained or validated on)`."""
    rows = "1 row" if count == 1 else f"{count} rows"
    return f"{rows} with empty text {'was' if count == 1 else 'were'} dropped (not used)"


def pareto_line(front: Sequence[int]) -> str:
    """`Pareto front: #3, #7, #9` (trials no other trial beats on both metric and cost)."""
    if not front:
        return "Pareto front: no complete trial yet"
    return "Pareto front: " + ", ".join(f"#{n}" for n in front)


def best_line(best: Mapping[str, Any] | None, metric: str) -> str:
    """`best: trial 3, val_loss 0.41 (lr=...)` or a note that there is none."""
    if best is None:
        return "best: no complete trial yet"
    values = best.get("values") or []
    cost = f", cost {fmt_number(values[1])} s" if len(values) > 1 else ""
    return (
        f"best: trial {best['number']}, {metric} {fmt_number(best['value'])}{cost} "
        f"({fmt_params(best['params'])})"
    )


def overhead_line(info: Mapping[str, Any]) -> str:
    """The overhead summary line of `sweep status`."""
    if not info["trials"]:
        return "sweep overhead: no timed session yet"
    return (
        f"sweep overhead: {info['overhead_seconds']:.2f} s over {info['trials']} trials "
        f"({fmt_number(info['per_trial_seconds'])} s per trial, "
        f"{fmt_number(info['percent_of_wall'])} % of {info['wall_seconds']:.1f} s wall time "
        f"in {info['sessions']} session(s))"
    )
