"""`sweep confirm`: re-run a study's best configurations with new seeds and say which one wins
once noise is counted (the logic is sweep.confirm)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from sweep.cli._common import (
    StorageOption,
    StudyNameArgument,
    consoles,
    pick_study,
    read_storage,
    setup_logging,
    user_errors,
)
from sweep.errors import ExitCode
from sweep.storage import (
    close_storage,
    default_artifacts_dir,
    default_checkpoint_dir,
    resolve_storage_url,
)


@user_errors
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
    from sweep.cli._render import render_confirm
    from sweep.confirm import check_options, plan_confirm, run_confirm, summarize
    from sweep.data import default_cache_dir

    out, err = consoles()
    setup_logging(err)
    check_options(top, seeds)
    url = resolve_storage_url(storage)
    opened = read_storage(storage)
    try:
        plan = plan_confirm(opened, pick_study(opened, name, url), top=top, seeds=seeds)
        _prepare_data(plan, err)
        _say_plan(plan, top, err)  # said only now: a failed confirm prints only its error line
        # Ctrl-C from here on is taken care of inside: the running fine-tune is failed as
        # interrupted and `outcome.interrupted` says so.
        outcome = run_confirm(
            opened,
            plan,
            cache_dir=default_cache_dir(),
            artifacts_dir=default_artifacts_dir(url),
            checkpoint_root=default_checkpoint_dir(url),
            on_run_end=lambda index, total, candidate, run: _say_run(
                plan, index, total, candidate, run, err
            ),
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
        raise typer.Exit(ExitCode.INTERRUPTED)


def _prepare_data(plan: Any, err: Any) -> None:
    """Load and tokenize what the runs need: a DataError or Ctrl-C here writes nothing."""
    from sweep.confirm import check_data
    from sweep.data import default_cache_dir

    if not plan.todo:
        return
    try:
        check_data(plan, default_cache_dir())
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def _say_plan(plan: Any, top: int, err: Any) -> None:
    name = plan.study.study_name
    if plan.unfinished:
        err.print(
            f"warning: study {name} still has {plan.unfinished} running or queued trial(s): its "
            "top configurations may change",
            markup=False,
        )
    if len(plan.candidates) < top:
        err.print(
            f"study {name} has {len(plan.candidates)} distinct complete configuration(s), "
            f"fewer than --top {top}: confirming those",
            markup=False,
        )
    err.print(
        f"confirming the top {len(plan.candidates)} configuration(s) of {name} "
        f"({plan.metric}, {'minimize' if plan.minimize else 'maximize'}) with {plan.seeds} new "
        f"seed(s) each: {len(plan.todo)} fine-tune(s) to run, {plan.reused} reused, "
        f"stored in study {plan.companion}",
        markup=False,
    )


def _say_run(plan: Any, index: int, total: int, candidate: Any, run: Any, err: Any) -> None:
    from sweep.study.text import fmt_number

    result = f"{plan.metric} {fmt_number(run.value)}" if run.value is not None else run.state
    err.print(
        f"run {index}/{total}: trial {candidate.trial} seed {run.seed}: {result} "
        f"({plan.companion} trial {run.trial})",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add `confirm` to `app`."""
    app.command()(confirm)
