"""`sweep confirm`: re-run a study's best configurations with new seeds and say which one wins
once noise is counted (the logic is sweep.confirm). Registered on the main app by sweep/cli.py."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from sweep._cli_common import (
    StorageOption,
    StudyNameArgument,
    _consoles,
    _pick_study,
    _read_storage,
    _setup_logging,
    _user_errors,
)
from sweep.storage import (
    close_storage,
    default_artifacts_dir,
    default_checkpoint_dir,
    resolve_storage_url,
)


@_user_errors
def confirm(
    name: StudyNameArgument = None,
    top: Annotated[
        int,
        typer.Option("--top", help="How many of the best distinct configurations to re-run."),
    ] = 3,
    seeds: Annotated[
        int,
        typer.Option("--seeds", help="New seeds per configuration (each one full fine-tune)."),
    ] = 3,
    storage: StorageOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Re-run a study's best configurations with new seeds; say which one wins once noise is
    counted.

    The --top best distinct configurations (COMPLETE trials, by the study's metric) are each
    fine-tuned --seeds more times with seeds they have not used (their seed + 1, + 2, ...).
    Prints each one's mean ± standard deviation over all its runs, the original included, and
    the verdict: the best mean wins clearly when Welch's t-test finds its difference from every
    other configuration unlikely to be noise (p < 0.05); otherwise those within the noise are
    tied with it. The runs are stored in the study NAME.confirm, never in NAME (its best, budget
    and sampler stay as they were); running confirm again reuses the finished runs. Ctrl-C stops
    cleanly: run the same command again to finish.
    """
    from sweep._confirm_run import run_confirm
    from sweep._confirm_verdict import summarize
    from sweep.confirm import check_data, check_options, plan_confirm
    from sweep.objective import default_cache_dir

    out, err = _consoles()
    _setup_logging(err)
    check_options(top, seeds)
    url = resolve_storage_url(storage)
    opened = _read_storage(storage)
    try:
        study = _pick_study(opened, name, url)
        plan = plan_confirm(opened, study, top=top, seeds=seeds)
        if plan.todo:
            try:
                check_data(plan, default_cache_dir())  # a DataError here: nothing written yet
            except KeyboardInterrupt:  # loading or tokenizing the data: nothing written yet
                err.print("interrupted", markup=False)
                raise typer.Exit(130) from None
        metric = plan.metric
        # Said only now: a failed confirm prints nothing but its one error line.
        if plan.unfinished:
            err.print(
                f"warning: study {study.study_name} still has {plan.unfinished} running or "
                "queued trial(s): its top configurations may change",
                markup=False,
            )
        if len(plan.candidates) < top:
            err.print(
                f"study {study.study_name} has {len(plan.candidates)} distinct complete "
                f"configuration(s), fewer than --top {top}: confirming those",
                markup=False,
            )
        err.print(
            f"confirming the top {len(plan.candidates)} configuration(s) of {study.study_name} "
            f"({metric}, {'minimize' if plan.minimize else 'maximize'}) with {seeds} new "
            f"seed(s) each: {len(plan.todo)} fine-tune(s) to run, {plan.reused} reused, "
            f"stored in study {plan.companion}",
            markup=False,
        )

        def run_ended(index: int, total: int, candidate: Any, run: Any) -> None:
            from sweep.status import fmt_number

            result = f"{metric} {fmt_number(run.value)}" if run.value is not None else run.state
            err.print(
                f"run {index}/{total}: trial {candidate.trial} seed {run.seed}: {result} "
                f"({plan.companion} trial {run.trial})",
                markup=False,
            )

        # Ctrl-C from here on is taken care of inside: the running fine-tune is failed as
        # interrupted and `outcome.interrupted` says so.
        outcome = run_confirm(
            opened,
            plan,
            cache_dir=default_cache_dir(),
            artifacts_dir=default_artifacts_dir(url),
            checkpoint_root=default_checkpoint_dir(url),
            on_run_end=run_ended,
        )
        summary = summarize(plan, outcome)
    finally:
        close_storage(opened)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        render_confirm(summary, out)
    if outcome.interrupted:
        err.print(
            "interrupted: the finished runs are stored; run the same sweep confirm again to finish",
            markup=False,
        )
        raise typer.Exit(130)


def render_confirm(summary: dict[str, Any], console: Any) -> None:
    """Draw the rows of `sweep._confirm_verdict.summarize`: a table row per configuration, the
    verdict."""
    from rich.table import Table
    from rich.text import Text

    from sweep.status import fmt_number, fmt_params

    metric = summary["metric"]
    table = Table(
        title=Text(
            f"confirm {summary['study']}: {metric} ({summary['direction']}), "
            f"{summary['seeds']} new seed(s) per configuration"
        )
    )
    for header, justify in (
        ("#", "right"),
        ("trial", "right"),
        ("parameters", "left"),
        ("runs", "right"),
        (f"{metric} mean ± std", "right"),
        ("original", "right"),
        ("new seeds", "left"),
        ("p vs #1", "right"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in summary["configurations"]:
        original = [r for r in row["runs"] if r["source"] == "original"]
        new = [r for r in row["runs"] if r["source"] != "original"]
        new_text = " ".join(
            fmt_number(r["value"]) if r["value"] is not None else r["state"].lower() for r in new
        )
        if row["missing"]:
            new_text += f" ({row['missing']} missing)"
        p = row["p_vs_winner"]
        table.add_row(
            str(row["rank"]),
            str(row["trial"]),
            Text(fmt_params(row["params"])),
            str(row["n"]),
            f"{fmt_number(row['mean'])} ± {fmt_number(row['std'])}",
            " ".join(fmt_number(r["value"]) for r in original),
            Text(new_text.strip() or "-"),
            "-" if p is None else f"{p:.3g}",
            style="bold green" if row["rank"] == 1 else None,
        )
    console.print(table)
    console.print(f"verdict: {summary['verdict_text']}", markup=False)
    if summary["sweep_best"] != summary["winner"]:
        rank = next(
            r["rank"] for r in summary["configurations"] if r["trial"] == summary["sweep_best"]
        )
        console.print(
            f"the sweep's best, trial {summary['sweep_best']}, ranks {rank} once noise is counted",
            markup=False,
        )
    console.print(
        f"runs: {summary['new_runs']} new, {summary['reused_runs']} reused, in study "
        f"{summary['confirm_study']}",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add `confirm` to `app`."""
    app.command()(confirm)
