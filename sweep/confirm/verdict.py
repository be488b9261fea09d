"""The verdict of `sweep confirm`: mean ± standard deviation of each configuration's runs, and
whether the best mean's lead is larger than the seed-to-seed noise (Welch's t-test; see
sweep.confirm.plan for why)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sweep.study.text import fmt_number

if TYPE_CHECKING:
    from sweep.confirm.plan import Plan
    from sweep.confirm.run import Outcome

ALPHA = 0.05  # Welch's t-test level below which a lead is larger than the noise


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test for equal means; None with fewer than 2 values each."""
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.variance(a) == 0 and statistics.variance(b) == 0:
        # No noise at all (deterministic runs): any difference is real. (scipy says NaN.)
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    from scipy.stats import ttest_ind  # lazy: only the verdict needs it

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def summarize(plan: Plan, outcome: Outcome | None = None, alpha: float = ALPHA) -> dict[str, Any]:
    """The result as plain, JSON-able data: one row per configuration, best mean first, and the
    verdict (`clear`, `tied`, `undecided` or `single`) with a sentence saying it."""
    rows = [_row(candidate) for candidate in plan.candidates]
    sign = 1.0 if plan.minimize else -1.0
    rows.sort(
        key=lambda r: (
            r["mean"] is None,
            sign * r["mean"] if r["mean"] is not None else 0.0,
            r["sweep_rank"],
        )
    )
    winner = rows[0]
    for row in rows:
        row["p_vs_winner"] = None if row is winner else welch_p(winner["values"], row["values"])
    verdict, text, tied = _verdict(winner, rows[1:], alpha)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return {
        "study": plan.study.study_name,
        "confirm_study": plan.companion,
        "metric": plan.metric,
        "direction": "minimize" if plan.minimize else "maximize",
        "top": plan.top,
        "seeds": plan.seeds,
        "alpha": alpha,
        "configurations": rows,
        "found": len(plan.candidates),
        "new_runs": outcome.ran if outcome else 0,
        "reused_runs": plan.reused,
        "interrupted": bool(outcome and outcome.interrupted),
        "winner": winner["trial"],
        "sweep_best": plan.candidates[0].trial,
        "verdict": verdict,
        "tied_with": [r["trial"] for r in tied],
        "verdict_text": text,
    }


def _row(candidate: Any) -> dict[str, Any]:
    """One configuration's runs, original first, and the mean and spread of their values."""
    runs = sorted(candidate.runs, key=lambda r: (r.source != "original", r.seed))
    values = [r.value for r in runs if r.value is not None]
    confirm_runs = [r for r in runs if r.source != "original"]
    return {
        "trial": candidate.trial,
        "sweep_rank": candidate.rank,
        "params": candidate.params,
        "seeds": candidate.seeds,
        "runs": [asdict(r) for r in runs],
        "values": values,
        "n": len(values),
        "failed": sum(1 for r in runs if r.value is None),
        "missing": len(candidate.seeds) - len(confirm_runs),
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) >= 2 else None,
    }


def _verdict(
    winner: dict[str, Any], others: list[dict[str, Any]], alpha: float
) -> tuple[str, str, list[dict[str, Any]]]:
    """(verdict, the sentence that says it, the configurations tied with the winner)."""
    tied = [r for r in others if r["p_vs_winner"] is not None and r["p_vs_winner"] >= alpha]
    unknown = [r for r in others if r["p_vs_winner"] is None]
    w = winner["trial"]
    if not others:
        return "single", f"only one configuration (trial {w}): nothing to compare it with", tied
    if tied:
        first = tied[0]
        names = ", ".join(str(r["trial"]) for r in [winner, *tied])
        text = (
            f"trial {w} has the best mean, but its lead over trial {first['trial']} "
            f"({fmt_number(abs(first['mean'] - winner['mean']))}) is within the noise "
            f"(Welch's t-test p = {first['p_vs_winner']:.3g} >= {alpha:g}): trials {names} are "
            "tied; more --seeds can tell them apart"
        )
        return "tied", text, tied
    if unknown:
        names = ", ".join(str(r["trial"]) for r in unknown)
        text = (
            f"trial {w} has the best mean; too few finished runs to compare it with trial "
            f"{names} (2 each are needed)"
        )
        return "undecided", text, tied
    runner = others[0]
    rest = " and against every other configuration" if len(others) > 1 else ""
    text = (
        f"trial {w} wins: its lead over the runner-up, trial {runner['trial']} "
        f"({fmt_number(abs(runner['mean'] - winner['mean']))}), is larger than the noise "
        f"(Welch's t-test p = {runner['p_vs_winner']:.3g} < {alpha:g}{rest})"
    )
    return "clear", text, tied
