"""The figures of one study's section of the report, in order, each with its title and a
one-line caption saying how to read it."""

from __future__ import annotations

import plotly.graph_objects as go

from sweep.report.figures import (
    cost_figure,
    curves_figure,
    esc,
    history_figure,
    importance_figure,
    learning_rate_figure,
    parallel_figure,
    timeline_figure,
)
from sweep.report.rows import StudyRows
from sweep.study.text import fmt_number

__all__ = ["fmt_duration", "study_figures"]


def study_figures(rows: StudyRows) -> list[tuple[str, str, go.Figure]]:
    """(title, one-line caption, figure) for each figure of one study's section."""
    metric = esc(rows.metric)
    better = rows.better
    return [
        (
            "Optimization history",
            f"Each dot is a complete trial in the order it ran; the red step line is the best "
            f"{metric} so far ({better} is better): where it flattens, more trials stopped paying "
            f"off.",
            history_figure(rows),
        ),
        (
            "Learning curves",
            "Validation loss after each epoch, one line per trial: pruned trials (orange) end "
            "with × where they were stopped, failed ones are red and dotted, the best trial is "
            "the thick black line.",
            curves_figure(rows),
        ),
        (
            "Parameters of every complete trial",
            f"Each line is a complete trial through its parameters, coloured by {metric} (the "
            f"bright end is better); drag along an axis to keep only the trials in a range.",
            parallel_figure(rows),
        ),
        (
            "Parameter importances",
            f"How much of the variance of {metric} each parameter explains on its own (between "
            f"groups of trials with similar values, minus chance): tune the long bars first; "
            f"what the bars leave is interactions and noise.",
            importance_figure(rows),
        ),
        (
            f"{metric} against learning rate",
            f"{metric} of each complete trial against its learning rate, one colour per model "
            f"size: find the size whose best points are {better} and how wide its good "
            f"learning-rate range is.",
            learning_rate_figure(rows),
        ),
        (
            f"Pareto front: {metric} against cost"
            if rows.multi_objective
            else f"{metric} against cost",
            _cost_caption(rows),
            cost_figure(rows),
        ),
        (
            "Timeline of trials per worker",
            "One row per worker and one bar per trial from its start to its end, coloured by "
            "state: gaps are idle time, red bars are failures (hover for the reason).",
            timeline_figure(rows),
        ),
    ]


def _cost_caption(rows: StudyRows) -> str:
    metric, unit = esc(rows.metric), rows.cost_unit
    if rows.multi_objective:
        return (
            f"The study's two objectives, {metric} and {unit}, per complete trial; the red "
            f"Pareto front joins the trials no other trial beats on both (sweep best "
            f"--budget picks the best {metric} along it), its steps show what each extra "
            f"minute of compute buys."
        )
    return (
        f"{metric} against {unit} per trial; the red Pareto front joins the trials no cheaper "
        f"trial beats, so its steps show what each extra minute of compute buys."
    )


def fmt_duration(seconds: float) -> str:
    """1234.5 -> '20 min 35 s'; short durations keep their decimals."""
    if seconds < 60:
        return f"{fmt_number(float(seconds))} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
