"""Draw the rows of `rows.py` as Plotly figures (one function per figure, rows in, figure out).

Every string that comes from the study (model sizes, worker names, failure messages, study
names) is HTML-escaped before it goes into a figure: plotly.js reads a small HTML subset in
labels and hover text (`<b>`, `<a href>`), so escaping makes a name show as written instead of
being read as markup. plotly.py's JSON encoder also writes `<`, `>` and `/` as `\\u003c`...,
so no string can close the page's `<script>` block.

Traces are grouped (one per state or per model size, trials separated by `None`) rather than
one per trial: a 1,000-trial study stays a few hundred kilobytes and draws in a blink.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from sweep.report.rows import StudyRows
from sweep.study import TrialKey

HEIGHT = 420
STATE_COLOURS = {
    "COMPLETE": "#2ca02c",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#1f77b4",
    "WAITING": "#7f7f7f",
}
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
PARAM_LABELS = {
    "learning_rate": "learning rate",
    "batch_size": "batch size",
    "epochs": "epochs",
    "model_size": "model size",
    "weight_decay": "weight decay",
    "warmup_ratio": "warmup ratio",
}


def _num(values: Sequence[Any]) -> np.ndarray:
    """Numbers as a float array, None as NaN (a gap in a line).

    plotly.py writes numpy arrays as base64 typed arrays: a quarter of the bytes of JSON
    numbers, and it skips its per-element validation (seconds at 1,000 trials).
    """
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def esc(value: Any) -> str:
    """A study string made safe (and shown literally) in plotly text, legends and hovers."""
    return html.escape(str(value), quote=False)


def _figure(**layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white",
        height=HEIGHT,
        margin={"l": 70, "r": 30, "t": 30, "b": 55},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        hoverlabel={"namelength": -1},
        **layout,
    )
    return fig


def _empty(message: str) -> go.Figure:
    """A figure that says why it has nothing to draw (the page keeps one plot per figure)."""
    fig = _figure()
    fig.add_annotation(text=esc(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _metric_label(rows: StudyRows) -> str:
    return f"{esc(rows.metric)} ({rows.better} is better)"


def _size_colours(rows: StudyRows) -> dict[str, str]:
    return {size: PALETTE[i % len(PALETTE)] for i, size in enumerate(rows.model_sizes)}


def history_figure(rows: StudyRows) -> go.Figure:
    """Optimization history: each complete trial's value, and the best-so-far line."""
    if not rows.history:
        return _empty("no complete trial yet")
    fig = _figure(xaxis_title="trial number", yaxis_title=_metric_label(rows))
    x = [r["number"] for r in rows.history]
    fig.add_scatter(
        x=_num(x),
        y=_num([r["best_so_far"] for r in rows.history]),
        mode="lines",
        name="best so far",
        line={"color": "#d62728", "width": 2.5, "shape": "hv"},
        hovertemplate="best after trial %{x}: %{y:.4g}<extra></extra>",
    )
    fig.add_scatter(
        x=_num(x),
        y=_num([r["value"] for r in rows.history]),
        mode="markers",
        name="trial",
        marker={
            "color": "#1f77b4",
            "size": 8,
            "opacity": 0.75,
            "line": {"color": "white", "width": 1},
        },
        hovertemplate="trial %{x}: %{y:.4g}<extra></extra>",
    )
    return fig


def _joined(curves: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    """Several curves as one trace: points of consecutive trials separated by a None."""
    xs: list[Any] = []
    ys: list[Any] = []
    numbers: list[Any] = []
    for curve in curves:
        xs.extend(curve["epochs"])
        ys.extend(curve["val_loss"])
        numbers.extend([curve["number"]] * len(curve["epochs"]))
        xs.append(None)
        ys.append(None)
        numbers.append(None)
    return xs, ys, numbers


def curves_figure(rows: StudyRows) -> go.Figure:
    """Learning curves: validation loss per epoch; pruned ends marked; the best trial on top."""
    if not rows.curves:
        return _empty("no trial has finished an epoch yet")
    fig = _figure(xaxis_title="epoch", yaxis_title="validation loss")
    fig.update_xaxes(dtick=1)
    groups = (
        ("complete", "COMPLETE", "#1f77b4", 0.35),
        ("pruned", "PRUNED", "#ff7f0e", 0.55),
        ("failed", "FAIL", "#d62728", 0.7),
        ("running", "RUNNING", "#7f7f7f", 0.7),
    )
    for label, state, colour, opacity in groups:
        curves = [c for c in rows.curves if c["state"] == state and not c["is_best"]]
        if not curves:
            continue
        xs, ys, numbers = _joined(curves)
        fig.add_scatter(
            x=_num(xs),
            y=_num(ys),
            customdata=_num(numbers),
            mode="lines",
            name=label,
            opacity=opacity,
            line={"color": colour, "width": 1.2, "dash": "dot" if state == "FAIL" else "solid"},
            hovertemplate="trial %{customdata}, epoch %{x}: %{y:.4g}<extra>" + label + "</extra>",
            connectgaps=False,
        )
        if state in ("PRUNED", "FAIL"):
            # Where each one stopped: the end of the curve, marked.
            ends = [(c["epochs"][-1], c["val_loss"][-1], c["number"]) for c in curves]
            fig.add_scatter(
                x=_num([e[0] for e in ends]),
                y=_num([e[1] for e in ends]),
                customdata=_num([e[2] for e in ends]),
                mode="markers",
                name=f"{label}: stopped here",
                marker={"symbol": "x", "color": colour, "size": 8},
                hovertemplate="trial %{customdata} stopped after epoch %{x}<extra></extra>",
            )
    best = [c for c in rows.curves if c["is_best"]]
    if best:
        xs, ys, numbers = _joined(best)
        fig.add_scatter(
            x=_num(xs),
            y=_num(ys),
            customdata=_num(numbers),
            mode="lines+markers",
            name=f"best (trial {best[0]['number']})",
            line={"color": "black", "width": 3.5},
            hovertemplate="best trial %{customdata}, epoch %{x}: %{y:.4g}<extra></extra>",
        )
    return fig


def _axis(name: str, values: list[Any]) -> dict[str, Any]:
    """A parallel-coordinates dimension: learning rates on a log10 axis, categories as ticks."""
    label = PARAM_LABELS.get(name, esc(name))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and name in ("learning_rate", "weight_decay") and all(v > 0 for v in values):
        logs = [math.log10(v) for v in values]
        lo, hi = math.floor(min(logs)), math.ceil(max(logs))
        ticks = list(range(lo, hi + 1))
        return {
            "label": f"{label} (log)",
            "values": _num(logs),
            "tickvals": ticks,
            "ticktext": [f"1e{t}" for t in ticks],
        }
    if numeric:
        distinct = sorted(set(values))
        if len(distinct) <= 12:
            # Batch sizes and epochs take a few values: ticks on exactly those.
            return {"label": label, "values": _num(values), "tickvals": distinct}
        return {"label": label, "values": _num(values)}
    categories = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(categories)}
    return {
        "label": label,
        "values": _num([index[str(v)] for v in values]),
        "tickvals": list(range(len(categories))),
        "ticktext": [esc(c) for c in categories],
    }


def parallel_figure(rows: StudyRows) -> go.Figure:
    """Parallel coordinates over the parameters, coloured by the metric."""
    names = [p for p in rows.params if all(p in r for r in rows.parallel)]
    if not rows.parallel or not names:
        return _empty("no complete trial yet")
    if rows.model_sizes and "model_size" in names:
        order = {size: i for i, size in enumerate(rows.model_sizes)}
        # Model sizes in their ladder order (small to large), not alphabetical.
        dims = [_axis(n, [r[n] for r in rows.parallel]) for n in names if n != "model_size"]
        dims.insert(
            names.index("model_size"),
            {
                "label": "model size",
                "values": _num([order.get(str(r["model_size"]), -1) for r in rows.parallel]),
                "tickvals": list(range(len(rows.model_sizes))),
                "ticktext": [esc(s) for s in rows.model_sizes],
            },
        )
    else:
        dims = [_axis(n, [r[n] for r in rows.parallel]) for n in names]
    values = [r["value"] for r in rows.parallel]
    dims.append({"label": esc(rows.metric), "values": _num(values)})
    fig = _figure()
    fig.add_trace(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": _num(values),
                "colorscale": "Viridis",
                # The better end of the metric is the bright one.
                "reversescale": rows.direction == "minimize",
                "showscale": True,
                "colorbar": {"title": {"text": esc(rows.metric)}},
            },
        )
    )
    fig.update_layout(margin={"l": 70, "r": 70, "t": 60, "b": 30})
    return fig


def importance_figure(rows: StudyRows) -> go.Figure:
    """Parameter importances as horizontal bars, the most important on top."""
    if not rows.importances:
        return _empty(f"no parameter importances: {rows.importance_note or 'no data'}")
    ordered = sorted(rows.importances.items(), key=lambda kv: kv[1])
    fig = _figure(xaxis_title=f"share of the variance of {esc(rows.metric)} it explains alone")
    fig.update_xaxes(rangemode="tozero")
    fig.add_bar(
        x=[v for _, v in ordered],
        y=[PARAM_LABELS.get(k, esc(k)) for k, _ in ordered],
        orientation="h",
        marker={"color": "#1f77b4"},
        text=[f"{v:.2f}" for _, v in ordered],
        textposition="auto",
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        showlegend=False,
    )
    return fig


def learning_rate_figure(rows: StudyRows) -> go.Figure:
    """The metric against the learning rate (log axis), one colour per model size."""
    if not rows.by_learning_rate:
        return _empty("no complete trial yet")
    fig = _figure(xaxis_title="learning rate", yaxis_title=_metric_label(rows))
    fig.update_xaxes(type="log", exponentformat="power")
    colours = _size_colours(rows)
    sizes = rows.model_sizes or [None]
    for size in sizes:
        points = [r for r in rows.by_learning_rate if r["model_size"] == size]
        if not points:
            continue
        fig.add_scatter(
            x=_num([p["learning_rate"] for p in points]),
            y=_num([p["value"] for p in points]),
            customdata=_num([p["number"] for p in points]),
            mode="markers",
            name=esc(size) if size is not None else "trials",
            marker={"color": colours.get(size, "#1f77b4") if size else "#1f77b4", "size": 8},
            hovertemplate="trial %{customdata}: lr %{x:.3g}, %{y:.4g}<extra>%{fullData.name}"
            "</extra>",
        )
    return fig


def cost_figure(rows: StudyRows) -> go.Figure:
    """The metric against each trial's cost, with the Pareto front drawn as a step line."""
    if not rows.cost:
        return _empty("no complete trial with a recorded training time yet")
    unit = rows.cost_unit
    fig = _figure(xaxis_title=unit, yaxis_title=_metric_label(rows))
    fig.add_scatter(
        x=_num([r["cost"] for r in rows.cost]),
        y=_num([r["value"] for r in rows.cost]),
        customdata=[[r["number"], esc(r["model_size"])] for r in rows.cost],
        mode="markers",
        name="trial",
        marker={"color": "#1f77b4", "size": 7, "opacity": 0.55},
        hovertemplate="trial %{customdata[0]} (%{customdata[1]}): %{x:.3g} "
        + unit
        + ", %{y:.4g}<extra></extra>",
    )
    front = sorted((r for r in rows.cost if r["pareto"]), key=lambda r: r["cost"])
    fig.add_scatter(
        x=_num([r["cost"] for r in front]),
        y=_num([r["value"] for r in front]),
        customdata=_num([r["number"] for r in front]),
        mode="lines+markers",
        name="Pareto front",
        line={"color": "#d62728", "width": 2, "shape": "hv"},
        marker={"color": "#d62728", "size": 10, "symbol": "diamond"},
        hovertemplate="trial %{customdata} on the front: %{x:.3g} " + unit + ", %{y:.4g}"
        "<extra></extra>",
    )
    return fig


def timeline_figure(rows: StudyRows) -> go.Figure:
    """One row per worker, one bar per trial from its start to its end, coloured by state."""
    if not rows.timeline:
        return _empty("no trial has started yet")
    # Workers in the order they first started a trial, top to bottom.
    first: dict[str, str] = {}
    for r in sorted(rows.timeline, key=lambda r: r["start"]):
        first.setdefault(r["worker"], r["start"])
    workers = [esc(w) for w in first]
    fig = _figure(xaxis_title="time", xaxis_type="date")
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(workers)), automargin=True)
    for state, colour in STATE_COLOURS.items():
        bars = [r for r in rows.timeline if r["state"] == state]
        if not bars:
            continue
        fig.add_bar(
            # A bar on a date axis: `base` is where it starts, x its length in milliseconds.
            base=[r["start"] for r in bars],
            x=_num([max(r["seconds"], 0.0) * 1000.0 for r in bars]),
            y=[esc(r["worker"]) for r in bars],
            customdata=[[r["number"], esc(r[TrialKey.END_REASON]), r["seconds"]] for r in bars],
            orientation="h",
            name=state.lower(),
            marker={"color": colour, "line": {"color": "white", "width": 0.5}},
            hovertemplate="trial %{customdata[0]}: %{customdata[1]} (%{customdata[2]:.1f} s)"
            "<extra>%{y}</extra>",
        )
    fig.update_layout(barmode="overlay", height=max(HEIGHT // 2, 120 + 40 * len(workers)))
    return fig


def overlay_figure(studies: Sequence[StudyRows]) -> go.Figure:
    """The best-so-far lines of several studies on one axis."""
    if not any(s.history for s in studies):
        return _empty("no study has a complete trial yet")
    metrics = sorted({s.metric for s in studies})
    fig = _figure(xaxis_title="trial number", yaxis_title=esc(" / ".join(metrics)))
    for i, s in enumerate(studies):
        if not s.history:
            continue
        fig.add_scatter(
            x=_num([r["number"] for r in s.history]),
            y=_num([r["best_so_far"] for r in s.history]),
            mode="lines",
            name=esc(s.name),
            line={"color": PALETTE[i % len(PALETTE)], "width": 2.5, "shape": "hv"},
            hovertemplate="best after trial %{x}: %{y:.4g}<extra>%{fullData.name}</extra>",
        )
    return fig
