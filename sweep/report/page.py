"""Lay the figures and tables out as one self-contained HTML page.

plotly.js is embedded once, in the head, and every figure is a `<div>` plus a few lines that
draw it: the page opens offline from disk and asks the network for nothing (no CDN, no MathJax,
no fonts). Every string from the study goes through `html.escape` here (header, tables,
titles), and through `figures.esc` inside the figures.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from sweep.report.figures import PARAM_LABELS, overlay_figure
from sweep.report.rows import StudyRows, compare
from sweep.report.sections import fmt_duration, study_figures
from sweep.study import TrialKey
from sweep.study.text import fmt_number, fmt_params

# No Plotly logo link, no "edit in Chart Studio" (both would point to the network).
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 26px 0 2px; }
p.caption { margin: 0 0 6px; color: #555; }
.figure { background: #fff; border: 1px solid #e4e4e4; border-radius: 4px; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.header dt { font-weight: 600; color: #444; }
dl.header dd { margin: 0; overflow-wrap: anywhere; }
nav a { margin-right: 14px; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid #e4e4e4; background: #fff; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { position: sticky; top: 0; background: #f0f0f0; cursor: pointer;
                    white-space: nowrap; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.best td { background: #e8f5e9; font-weight: 600; }
tr.FAIL td.state { color: #c62828; } tr.PRUNED td.state { color: #e65100; }
td.reason { min-width: 220px; max-width: 420px; overflow-wrap: anywhere; }
table.compare th { background: #f0f0f0; }
"""

# Sort a table by the clicked column: numbers by their data-v value, text as text; a second
# click reverses. No library: the page must work offline.
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var numeric = th.dataset.type === "num";
      var key = function (tr) {
        var td = tr.cells[col];
        if (numeric) {
          var v = parseFloat(td.dataset.v);
          return isNaN(v) ? (asc ? Infinity : -Infinity) : v;
        }
        return td.textContent;
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = numeric ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (tr) { body.appendChild(tr); });
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num_cell(value: Any, text: str | None = None) -> str:
    """A right-aligned cell that sorts by its number (empty values sort last)."""
    shown = fmt_number(value) if text is None else text
    key = "" if value is None or isinstance(value, str) else repr(float(value))
    return f'<td class="num" data-v="{_e(key)}">{_e(shown)}</td>'


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items()) or "none"


def _cost_text(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "-"
    return f"{fmt_duration(seconds)} ({fmt_number(float(seconds))} {unit})"


def header_html(rows: StudyRows) -> str:
    """The short header of one study: data, trials by state, best trial, total compute."""
    best = rows.best
    if best is None:
        best_text = "no complete trial yet"
    else:
        best_text = (
            f"trial {best['number']}: {rows.metric} {fmt_number(best['value'])} "
            f"({fmt_params(best['params'])})"
        )
    metric = f"{rows.metric}, {rows.direction} ({rows.better} is better)"
    if rows.multi_objective:
        metric += f"; and cost ({rows.cost_unit}), minimize: two objectives"
    items = [("study", rows.name), ("metric", metric), ("data", rows.data or "-")]
    if rows.label_names:
        items.append(("labels", ", ".join(rows.label_names)))
    items += [
        ("trials", f"{sum(rows.counts.values())}: {_counts_text(rows.counts)}"),
        ("best", best_text),
    ]
    if rows.pareto_front is not None:
        front = ", ".join(f"#{n}" for n in rows.pareto_front) or "no complete trial yet"
        items.append(("Pareto front", front))
    items.append(("total compute", _cost_text(rows.total_cost, rows.cost_unit)))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<dl class="header">{body}</dl>'


def trials_table_html(rows: StudyRows) -> str:
    """All trials as a sortable table, the best highlighted, with why each one ended."""
    params = rows.params
    heads = [("#", "num"), ("state", "text")]
    heads += [(PARAM_LABELS.get(p, p), "num" if p != "model_size" else "text") for p in params]
    heads += [
        (rows.metric, "num"),
        ("best epoch", "num"),
        ("epochs run", "num"),
        (rows.cost_unit, "num"),
        *([("Pareto", "text")] if rows.multi_objective else []),
        ("worker", "text"),
        ("device", "text"),
        ("end reason", "text"),
    ]
    th = "".join(
        f'<th data-type="{kind}" title="click to sort">{_e(name)}</th>' for name, kind in heads
    )
    body = []
    for r in rows.trials:
        cells = [
            _num_cell(r["number"], str(r["number"])),
            f'<td class="state">{_e(r["state"])}</td>',
        ]
        for p in params:
            v = r["params"].get(p)
            if isinstance(v, int | float) and not isinstance(v, bool):
                cells.append(_num_cell(v))
            else:
                cells.append(f"<td>{_e('-' if v is None else v)}</td>")
        cells += [
            _num_cell(r["value"]),
            _num_cell(r["best_epoch"]),
            _num_cell(r["epochs_run"]),
            _num_cell(r["cost"]),
            *(
                ['<td class="pareto">on front</td>' if r["pareto"] else "<td></td>"]
                if rows.multi_objective
                else []
            ),
            f"<td>{_e(r['worker'] or '-')}</td>",
            f"<td>{_e(r['device'] or '-')}</td>",
            f'<td class="reason">{_e(r[TrialKey.END_REASON])}</td>',
        ]
        cls = f"{_e(r['state'])}{' best' if r['is_best'] else ''}"
        body.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def compare_table_html(studies: Sequence[StudyRows]) -> str:
    """Best trials of several studies side by side: one column per study."""
    data = compare(studies)
    params = sorted({p for d in data for p in d["params"]}, key=_param_order)
    lines: list[tuple[str, list[str]]] = [
        ("metric", [f"{d['metric']} ({d['direction']})" for d in data]),
        ("trials", [f"{d['trials']} ({d['complete']} complete)" for d in data]),
        ("best trial", ["-" if d["best_number"] is None else str(d["best_number"]) for d in data]),
        ("best value", [fmt_number(d["best_value"]) for d in data]),
    ]
    for p in params:
        lines.append((PARAM_LABELS.get(p, p), [fmt_number(d["params"].get(p)) for d in data]))
    lines += [
        ("best epoch", [fmt_number(d["best_epoch"]) for d in data]),
        ("cost of the best", [_cost_text(d["best_cost"], d["cost_unit"]) for d in data]),
        ("device", [d["device"] or "-" for d in data]),
        ("total compute", [_cost_text(d["total_cost"], d["cost_unit"]) for d in data]),
    ]
    head = "<th></th>" + "".join(f"<th>{_e(d['study'])}</th>" for d in data)
    body = "".join(
        f"<tr><th>{_e(name)}</th>{''.join(f'<td>{_e(v)}</td>' for v in values)}</tr>"
        for name, values in lines
    )
    return f'<table class="compare"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _param_order(name: str) -> tuple[int, str]:
    order = list(PARAM_LABELS)
    return (order.index(name) if name in order else len(order), name)


def _figure_html(fig: Any, div_id: str) -> str:
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        config=PLOT_CONFIG,
        div_id=div_id,
        default_height=f"{fig.layout.height or 420}px",
        # Figures are built by our own code from checked rows: skip plotly.py's slow
        # per-property validation of the large arrays.
        validate=False,
    )


def _section(title: str, caption: str, body: str, anchor: str | None = None) -> str:
    ident = f' id="{_e(anchor)}"' if anchor else ""
    return f'<h3{ident}>{title}</h3>\n<p class="caption">{caption}</p>\n{body}\n'


def render_page(studies: Sequence[StudyRows], *, refresh_seconds: float | None = None) -> str:
    """The whole report as one HTML string (plotly.js embedded once)."""
    names = ", ".join(s.name for s in studies)
    parts: list[str] = []
    if len(studies) > 1:
        nav = " ".join(f'<a href="#study-{i}">{_e(s.name)}</a>' for i, s in enumerate(studies))
        parts.append(f"<nav>studies: {nav}</nav>")
        parts.append("<h2>Comparison</h2>")
        parts.append(
            _section(
                "Best so far, every study",
                "The best value each study had found after each trial, on one axis: the "
                "lowest (loss) or highest (accuracy) line at the right end won, the steepest "
                "early drop got there cheapest.",
                f'<div class="figure">{_figure_html(overlay_figure(studies), "fig-compare")}</div>',
            )
        )
        parts.append(
            _section(
                "Best trials side by side",
                "One column per study: its best trial's value, parameters and cost.",
                compare_table_html(studies),
            )
        )
    for i, study in enumerate(studies):
        parts.append(f'<h2 id="study-{i}">Study {_e(study.name)}</h2>')
        parts.append(header_html(study))
        for j, (title, caption, fig) in enumerate(study_figures(study)):
            div = _figure_html(fig, f"fig-{i}-{j}")
            # Titles and captions are our text with the study's strings already escaped.
            parts.append(_section(title, caption, f'<div class="figure">{div}</div>'))
        parts.append(
            _section(
                "Trials",
                "Every trial; click a column header to sort by it. The best trial is "
                "highlighted, the last column says why each trial ended (failure reasons).",
                trials_table_html(study),
            )
        )
    refresh = (
        f'<meta http-equiv="refresh" content="{max(1, round(refresh_seconds))}">'
        if refresh_seconds
        else ""
    )
    generated = studies[0].generated if studies else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{refresh}<title>sweep report: {_e(names)}</title>\n"
        f"<style>{_CSS}</style>\n"
        # As plotly.py does: no MathJax lookup from plotly.js.
        '<script>window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n'
        f'<script charset="utf-8">{get_plotlyjs()}</script>\n'
        "</head><body><main>\n"
        f"<h1>sweep report: {_e(names)}</h1>\n"
        f'<p class="caption">generated {_e(generated)}'
        f"{' (rewritten while the sweep runs)' if refresh_seconds else ''}</p>\n"
        + "\n".join(parts)
        + f"\n<script>{_SORT_JS}</script>\n</main></body></html>\n"
    )
