"""What `sweep run` shows while it works: a live progress, one line per trial, a summary."""

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sweep.errors import ExitCode
from sweep.study import (
    SESSION_PREFIX,
    TrialKey,
    best_trial,
    counts_towards_budget,
    end_reason_text,
    overhead,
    trial_row,
)
from sweep.study.text import best_line, fmt_number, fmt_params, overhead_line


def best_value(study: Any) -> float | None:
    """The metric of the study's best trial so far (values[0], also in a multi-objective
    study), or None."""
    best = best_trial(study)
    return best.values[0] if best is not None else None


class RunDisplay:
    """The live view of `sweep run`: a Rich progress on stderr, one line per trial on stdout."""

    def __init__(self, out: Any, err: Any, metric: str, n_trials: int) -> None:
        self.out = out
        self.err = err
        self.metric = metric
        self.n_trials = n_trials
        self.progress: Any = None
        self.task: Any = None
        self.best: float | None = None
        self.goal_min = metric == "val_loss"

    def live(self, done: int, best: float | None) -> Any:
        """A context manager showing the progress while trials run."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.best = best
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("trials"),
            MofNCompleteColumn(),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[running]}", markup=False),
            TextColumn("best {task.fields[best]}", markup=False),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
            refresh_per_second=2,
            # ETA from the whole session's pace, not the last 30 s (a trial can take longer).
            speed_estimate_period=24 * 3600,
        )
        self.task = self.progress.add_task(
            "trials",
            total=self.n_trials,
            completed=min(done, self.n_trials),
            running="",
            best=fmt_number(best),
        )
        return self.progress

    def trial_started(self, number: int, params: Any) -> None:
        """A trial starts: show its number and parameters."""
        if self.progress is not None:
            self.progress.update(self.task, running=f"trial {number}: epoch 0/{params.epochs}")

    def epoch_done(self, number: int, params: Any, metrics: Any) -> None:
        """An epoch ended: show it with its validation metric."""
        value = metrics.val_loss if self.metric == "val_loss" else metrics.val_accuracy
        if self.progress is not None:
            self.progress.update(
                self.task,
                running=(
                    f"trial {number}: epoch {metrics.epoch}/{params.epochs} "
                    f"{self.metric} {fmt_number(value)}"
                ),
            )

    def trial_ended(self, trial: Any) -> None:
        """A trial finished: print its line, update done/best."""
        from optuna.trial import TrialState

        row = trial_row(trial)
        if trial.state == TrialState.COMPLETE and row["value"] is not None:
            value = row["value"]
            if self.best is None or (value < self.best if self.goal_min else value > self.best):
                self.best = value
        line = trial_line(row, self.metric)
        if self.progress is not None and self.out.is_terminal and self.err.is_terminal:
            # One terminal: print through the live display's console, which puts the line above
            # the progress bar (a print on stdout would land in the middle of it).
            self.progress.console.print(line, markup=False)
        else:
            self.out.print(line, markup=False)
        if self.progress is not None:
            counted = 1 if counts_towards_budget(trial) else 0
            self.progress.update(self.task, advance=counted, running="", best=fmt_number(self.best))


def trial_line(row: dict[str, Any], metric: str) -> str:
    """`trial 3  COMPLETE  val_loss 0.4123  lr=... batch=32 ...  12.3 s  complete`; in a
    multi-objective study the cost follows the metric (`val_loss 0.4123  cost 8.2 s`)."""
    values = row.get("values") or []
    cost = f"cost {fmt_number(values[1]) + ' s':<9}  " if len(values) > 1 else ""
    return (
        f"trial {row['number']:>3}  {row['state']:<8}  {metric} {fmt_number(row['value']):<9}  "
        f"{cost}{fmt_params(row['params'])}  {fmt_number(row['seconds'])} s  "
        f"{row[TrialKey.END_REASON]}"
    )


def print_summary(out: Any, session: Any, metric: str) -> None:
    """What a `sweep run` did: trials counted, the best trial, this run's overhead."""
    study = session.study
    if session.abandoned:
        # Stopped while the database is away: nothing more can be read from it.
        out.print(
            f"stopped: the database of study {study.study_name} is unreachable; the running "
            "trial resumes from its checkpoint on the next worker",
            markup=False,
        )
        return
    counted = session.counted()
    head = "interrupted" if session.interrupted else "stopped" if session.preempted else "done"
    out.print(
        f"{head}: study {study.study_name} has {counted} of {session.n_trials} trials "
        f"({here_text(session.finished_here)})",
        markup=False,
    )
    best = best_trial(study)
    out.print(best_line(trial_row(best) if best is not None else None, metric), markup=False)
    record = session.session_record()
    info = overhead({SESSION_PREFIX: record})
    if record["trials"]:
        out.print(f"this run: {overhead_line(info).removeprefix('sweep ')}", markup=False)


def here_text(finished: Sequence[Any]) -> str:
    """`3 finished in this run` and, for trials that ended here without counting (preempted,
    interrupted, stopped by the infrastructure), how many of each: `1 preempted, queued again`."""
    counted = sum(1 for t in finished if counts_towards_budget(t))
    parts = [f"{counted} finished in this run"]
    others = Counter(
        end_reason_text(t).removesuffix(", queued again") + (", queued again" if _queued(t) else "")
        for t in finished
        if not counts_towards_budget(t)
    )
    parts += [f"{n} {reason}" for reason, n in others.items()]
    return "; ".join(parts)


def _queued(trial: Any) -> bool:
    return bool(trial.user_attrs.get(TrialKey.RETRIED))


def print_workers_summary(
    out: Any, study_obj: Any, n_trials: int, metric: str, codes: list[int]
) -> None:
    """What `sweep run --workers N` did: trials counted, the best trial, workers that failed."""
    counted = sum(1 for t in study_obj.get_trials(deepcopy=False) if counts_towards_budget(t))
    out.print(
        f"done: study {study_obj.study_name} has {counted} of {n_trials} trials "
        f"({len(codes)} workers)",
        markup=False,
    )
    best = best_trial(study_obj)
    out.print(best_line(trial_row(best) if best is not None else None, metric), markup=False)
    for index, code in enumerate(codes):
        if code not in (ExitCode.OK, ExitCode.INTERRUPTED):
            out.print(
                f"worker {index} exited with code {code} (its errors are above)", markup=False
            )
