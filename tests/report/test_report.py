"""`sweep report`: the rows behind each figure checked as data, the page, the command.

Studies are built with `optuna.create_study` + `add_trial` and the user attributes a real
`sweep run` writes (no training), so each test takes well under a second. The page in a real
browser: tests/test_report_browser.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from sweep.cli import app
from sweep.report import collect, compare, render_page, report_html
from sweep.report.rows import COST_CPU, COST_GPU, pareto_front

optuna.logging.set_verbosity(optuna.logging.ERROR)

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'

DISTRIBUTIONS = {
    "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "batch_size": optuna.distributions.CategoricalDistribution([16, 32]),
    "epochs": optuna.distributions.IntDistribution(1, 3),
    "model_size": optuna.distributions.CategoricalDistribution(["nano", "micro"]),
}

# (state, learning rate, batch, epochs, size, val_loss per epoch, worker, end attrs)
TRIALS: list[tuple[str, float, int, int, str, list[float], str, dict[str, Any]]] = [
    ("COMPLETE", 1e-3, 16, 3, "nano", [0.70, 0.60, 0.55], "hostA:1", {}),
    ("COMPLETE", 3e-3, 32, 3, "micro", [0.65, 0.50, 0.45], "hostB:2", {}),
    ("PRUNED", 1e-4, 16, 3, "nano", [0.72], "hostA:1", {"pruned_at_epoch": 1}),
    ("COMPLETE", 1e-2, 16, 2, "micro", [0.60, 0.40], "hostB:2", {}),
    ("FAIL", 9e-2, 32, 3, "micro", [0.69], "hostA:1", {"error": "RuntimeError: CUDA <boom>"}),
    ("PRUNED", 2e-4, 32, 3, "micro", [0.71, 0.68], "hostB:2", {"pruned_at_epoch": 2}),
    ("COMPLETE", 5e-3, 32, 1, "nano", [0.58], "hostA:1", {}),
    ("COMPLETE", 2e-3, 16, 3, "nano", [0.66, 0.52, 0.48], "hostB:2", {}),
]


def make_study(
    url: str,
    name: str = "demo",
    *,
    label_names: list[str] | None = None,
    device: str = "cpu (2 threads)",
    gpus: int | None = None,
    model_sizes: tuple[str, str] = ("nano", "micro"),
    running: bool = False,
) -> optuna.Study:
    """A study shaped like one `sweep run` writes: complete, pruned and failed trials on two
    workers, each with its epoch history, timing and device (val_loss, minimized)."""
    study = optuna.create_study(study_name=name, storage=url, direction="minimize")
    study.set_user_attr("metric", "val_loss")
    study.set_user_attr("data_source", "demo (synthetic), 300 rows")
    study.set_user_attr("label_names", label_names or ["negative", "positive"])
    study.set_user_attr(
        "config", {"models": {model_sizes[0]: {}, model_sizes[1]: {}}, "data": {"demo": True}}
    )
    rename = {"nano": model_sizes[0], "micro": model_sizes[1]}
    dists = dict(DISTRIBUTIONS)
    dists["model_size"] = optuna.distributions.CategoricalDistribution(list(model_sizes))
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    clock = {"hostA:1": t0, "hostB:2": t0}
    for i, (state, lr, batch, epochs, size, losses, worker, extra) in enumerate(TRIALS):
        history = [
            {
                "epoch": e + 1,
                "train_loss": loss + 0.05,
                "val_loss": loss,
                "val_accuracy": 1.0 - loss,
                "seconds": 2.0,
            }
            for e, loss in enumerate(losses)
        ]
        attrs: dict[str, Any] = {
            "worker": worker,
            "seed": i,
            "epochs_run": len(losses),
            "epoch_history": history,
            "device": device,
        }
        if gpus is not None:
            attrs["gpus"] = gpus
        if state == "FAIL":
            attrs["end_reason"] = "error"
        else:
            best = min(range(len(losses)), key=lambda k: losses[k])
            attrs.update(
                end_reason="complete" if state == "COMPLETE" else "stopped",
                best_epoch=best + 1,
                train_seconds=2.0 * len(losses),
                val_loss=losses[best],
                val_accuracy=1.0 - losses[best],
            )
        attrs.update(extra)
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState[state],
            value=min(losses) if state == "COMPLETE" else None,
            params={
                "learning_rate": lr,
                "batch_size": batch,
                "epochs": epochs,
                "model_size": rename[size],
            },
            distributions=dists,
            user_attrs=attrs,
            intermediate_values={e + 1: loss for e, loss in enumerate(losses)},
        )
        start = clock[worker] + dt.timedelta(seconds=3 if i == 6 else 0.5)  # an idle gap
        trial.datetime_start = start
        trial.datetime_complete = start + dt.timedelta(seconds=2.0 * len(losses) + 0.3)
        clock[worker] = trial.datetime_complete
        study.add_trial(trial)
    if running:
        study.enqueue_trial(
            {"learning_rate": 1e-3, "batch_size": 16, "epochs": 2, "model_size": model_sizes[0]}
        )
    return study


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    return make_study(f"sqlite:///{tmp_path / 'r.db'}")


# -- rows as data ------------------------------------------------------------------------------


def test_header_rows(study: optuna.Study) -> None:
    rows = collect(study)
    assert rows.name == "demo" and rows.metric == "val_loss" and rows.direction == "minimize"
    assert rows.counts == {"COMPLETE": 5, "PRUNED": 2, "FAIL": 1}
    assert rows.best is not None and rows.best["number"] == 3 and rows.best["value"] == 0.40
    assert rows.label_names == ["negative", "positive"]
    assert rows.data == "demo (synthetic), 300 rows"
    assert rows.model_sizes == ["nano", "micro"]  # the study's ladder order, not sorted
    assert rows.params == ["learning_rate", "batch_size", "epochs", "model_size"]
    # Every trial's epochs × 2 s: the failed one has no train_seconds, its epochs count.
    epochs = sum(len(t[5]) for t in TRIALS)
    assert rows.total_cost == pytest.approx(2.0 * epochs)
    assert rows.cost_unit == COST_CPU


def test_best_so_far_never_gets_worse(study: optuna.Study) -> None:
    history = collect(study).history
    assert [r["number"] for r in history] == [0, 1, 3, 6, 7]
    best = [r["best_so_far"] for r in history]
    assert all(b <= a for a, b in itertools.pairwise(best))
    assert best == [0.55, 0.45, 0.40, 0.40, 0.40]
    assert all(r["best_so_far"] <= r["value"] for r in history)


def test_best_so_far_of_a_maximized_metric_never_decreases(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'm.db'}", direction="maximize")
    for v in (0.5, 0.7, 0.6, 0.9, 0.8):
        study.add_trial(optuna.trial.create_trial(value=v))
    best = [r["best_so_far"] for r in collect(study).history]
    assert best == [0.5, 0.7, 0.7, 0.9, 0.9]


def test_learning_curves_stop_where_trials_stopped(study: optuna.Study) -> None:
    curves = {c["number"]: c for c in collect(study).curves}
    assert len(curves) == len(TRIALS)
    for number in (2, 5):  # pruned
        c = curves[number]
        assert c["state"] == "PRUNED"
        assert c["stopped_at"] == c["pruned_at_epoch"] == c["epochs"][-1] == len(c["val_loss"])
    assert curves[4]["state"] == "FAIL" and curves[4]["stopped_at"] == 1
    assert curves[0]["epochs"] == [1, 2, 3] and curves[0]["val_loss"] == [0.70, 0.60, 0.55]
    assert [n for n, c in curves.items() if c["is_best"]] == [3]


def test_learning_curves_fall_back_to_intermediate_values(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'i.db'}")
    study.set_user_attr("metric", "val_loss")
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.9, 2: 0.8}
        )
    )
    (curve,) = collect(study).curves
    assert curve["epochs"] == [1, 2] and curve["val_loss"] == [0.9, 0.8]


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["cost"] <= b["cost"]
        and a["value"] <= b["value"]
        and (a["cost"] < b["cost"] or a["value"] < b["value"])
    )


def test_pareto_front_is_non_dominated(study: optuna.Study) -> None:
    cost = collect(study).cost
    assert len(cost) == 5  # complete trials with a training time
    front = [r for r in cost if r["pareto"]]
    rest = [r for r in cost if not r["pareto"]]
    assert front and rest
    for r in front:
        assert not any(_dominates(o, r) for o in cost if o is not r)
    for r in rest:
        assert any(_dominates(o, r) for o in front)
    # 2 s trial (0.58), 4 s trial (0.40): nothing cheaper beats either.
    assert sorted((r["cost"], r["value"]) for r in front) == [(2.0, 0.58), (4.0, 0.40)]


def test_pareto_front_edge_cases() -> None:
    assert pareto_front([], "minimize") == []
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)], "minimize") == [True, False]
    assert pareto_front([(1.0, 0.5), (2.0, 0.9), (3.0, 0.7)], "maximize") == [True, True, False]


def test_cost_on_gpus_is_gpu_seconds(tmp_path: Path) -> None:
    study = make_study(f"sqlite:///{tmp_path / 'g.db'}", device="cuda:0 NVIDIA H100", gpus=2)
    rows = collect(study)
    assert rows.cost_unit == COST_GPU
    assert rows.total_cost == pytest.approx(2 * 2.0 * sum(len(t[5]) for t in TRIALS))


def test_parallel_lr_timeline_importance_rows(study: optuna.Study) -> None:
    rows = collect(study)
    assert [r["number"] for r in rows.parallel] == [0, 1, 3, 6, 7]
    assert set(rows.parallel[0]) == {"number", "value", *rows.params}
    assert {r["model_size"] for r in rows.by_learning_rate} == {"nano", "micro"}
    assert len(rows.timeline) == len(TRIALS)
    workers = {r["worker"] for r in rows.timeline}
    assert workers == {"hostA:1", "hostB:2"}
    fail = next(r for r in rows.timeline if r["state"] == "FAIL")
    assert fail["end_reason"] == "error: RuntimeError: CUDA <boom>"
    if rows.importances is None:  # 5 complete trials may explain nothing beyond chance
        assert rows.importance_note
    else:
        assert set(rows.importances) <= set(rows.params)
        assert all(0.0 <= v <= 1.0 for v in rows.importances.values())


def test_importances_find_the_parameter_that_matters() -> None:
    # The value is a function of the learning rate (log scale) plus a little of the model size;
    # the batch size is noise.
    study = optuna.create_study()  # in memory: 60 trials in a blink
    rng = np.random.default_rng(0)
    for i in range(60):
        lr = float(10 ** rng.uniform(-4, -1))
        size = ["nano", "micro"][i % 2]
        value = (np.log10(lr) + 2.5) ** 2 + (0.1 if size == "nano" else 0.0)
        study.add_trial(
            optuna.trial.create_trial(
                value=float(value + rng.normal(0, 0.02)),
                params={
                    "learning_rate": lr,
                    "batch_size": int(rng.choice([16, 32])),
                    "model_size": size,
                    "epochs": 2,
                },
                distributions={
                    **DISTRIBUTIONS,
                    "epochs": optuna.distributions.IntDistribution(1, 3),
                },
            )
        )
    imp = collect(study).importances
    assert imp is not None
    assert next(iter(imp)) == "learning_rate" and imp["learning_rate"] > 0.8
    assert imp["batch_size"] < 0.05
    assert "epochs" not in imp  # one value: nothing to explain


def test_a_study_with_no_trials(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="empty")
    rows = collect(study)
    assert rows.best is None and rows.history == [] and rows.importances is None
    page = render_page([rows])
    assert "no complete trial yet" in page
    assert page.count('class="plotly-graph-div"') == 7


def test_compare_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    a, b = make_study(url, "a"), make_study(url, "b")
    rows = compare([collect(a), collect(b)])
    assert [r["study"] for r in rows] == ["a", "b"]
    assert rows[0]["best_number"] == 3 and rows[0]["params"]["model_size"] == "micro"


# -- the page ----------------------------------------------------------------------------------


def test_page_is_self_contained(study: optuna.Study) -> None:
    page = report_html([study])
    # plotly.js inline, once; the rest of the page fetches nothing from anywhere.
    assert page.count(get_plotlyjs()) == 1
    rest = page.replace(get_plotlyjs(), "")
    assert rest.count('class="plotly-graph-div"') == 7
    assert rest.count("Plotly.newPlot") == 7
    assert not re.search(r"<script[^>]*\bsrc=", rest)
    assert not re.search(r"<link\b", rest)
    assert not re.search(r"https?:|//[a-z]", rest.replace("http-equiv", ""))
    assert "mathjax" not in rest.lower().replace('mathjaxconfig: "local"', "")
    assert '"displaylogo": false' in rest


def test_study_strings_are_escaped(tmp_path: Path) -> None:
    study = make_study(
        f"sqlite:///{tmp_path / 'x.db'}",
        name=f"study {XSS}",
        label_names=[XSS, "fine"],
        model_sizes=(f"n{XSS}", "micro"),
    )
    page = report_html([study])
    # The only <script> tags are ours: plotly.js, the sort code, one per figure.
    assert "<script>window.__xss" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    # Inside the figures' JSON too (plotly.js would read the markup): escaped before plotly.py
    # writes it, so no raw tag reaches the JSON even as \\u003c.
    assert "\\u003cscript" not in page and "\\u003cimg" not in page
    assert "n&lt;script&gt;" in page  # the model size, in the figures
    assert "RuntimeError: CUDA &lt;boom&gt;" in page
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert all(
        s in ("<script>", '<script charset="utf-8">', '<script type="text/javascript">')
        for s in scripts
    ), set(scripts)


def test_watch_refreshes_the_open_page(study: optuna.Study) -> None:
    assert 'http-equiv="refresh" content="5"' in report_html([study], refresh_seconds=5)
    assert "http-equiv" not in report_html([study])


def test_several_studies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    page = report_html([make_study(url, "one"), make_study(url, "two")])
    assert page.count('class="plotly-graph-div"') == 1 + 2 * 7
    assert "Best trials side by side" in page and "Best so far, every study" in page


# -- the command -------------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def cli_storage(cli_env: Path) -> str:
    url = "sqlite:///sweep.db"
    make_study(url, "demo")
    return url


def test_report_command(cli_storage: str, cli_env: Path) -> None:
    result = invoke("report", "-o", "out/report.html")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: cannot write the report to out/report.html")
    result = invoke("report", "demo", "-o", "report.html")
    assert result.exit_code == 0, result.output
    assert "wrote report.html: demo, 8 trials" in result.stdout
    page = (cli_env / "report.html").read_text()
    assert page.count('class="plotly-graph-div"') == 7
    assert not list(cli_env.glob(".report.html.*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "-o", "r.html"), "error: no study named 'nope'"),
        (("demo", "-o", "r.html", "--watch", "0"), "error: --watch must be a positive number"),
        (("demo", "-o", "r.html", "--storage", "sqlite:///missing.db"), "error: no study database"),
        (("demo", "-o", "r.html", "--storage", "nonsense"), "error: malformed storage URL"),
        (("demo", "-o", "."), "error: cannot write the report to .: it is a directory"),
    ],
)
def test_report_user_errors(cli_storage: str, args: tuple[str, ...], message: str) -> None:
    result = invoke("report", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _sweep(*args: str, cwd: Path, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "SWEEP_STORAGE": "", "COLUMNS": "200"}
    code = "import sys; from sweep.cli import main; sys.argv[0] = 'sweep'; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, text=True, **kwargs
    )


def test_report_does_not_import_torch(cli_storage: str, cli_env: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sweep.cli import app\n"
        "r = CliRunner().invoke(app, ['report', 'demo', '-o', 'r.html'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cli_env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout


def test_watch_rewrites_the_file_while_the_sweep_runs(cli_storage: str, cli_env: Path) -> None:
    report = cli_env / "live.html"
    proc = _sweep(
        "report",
        "demo",
        "-o",
        str(report),
        "--storage",
        cli_storage,
        "--watch",
        "0.5",
        cwd=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert report.exists()
        assert ">8: 5 complete" in report.read_text()
        # A worker finishes another trial: the next rewrite shows it.
        study = optuna.load_study(study_name="demo", storage=cli_storage)
        study.add_trial(
            optuna.trial.create_trial(
                value=0.3,
                params={"learning_rate": 1e-3, "batch_size": 16, "epochs": 1, "model_size": "nano"},
                distributions=DISTRIBUTIONS,
            )
        )
        while ">9: 6 complete" not in report.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ">9: 6 complete" in report.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped watching" in err


def test_report_json_of_rows_is_plain_data(study: optuna.Study) -> None:
    # The rows are JSON-able as they are: no Plotly or numpy objects hide in them.
    rows = collect(study)
    json.dumps([rows.history, rows.curves, rows.cost, rows.timeline, rows.trials, rows.parallel])
    json.dumps(rows.importances)


def test_running_and_waiting_trials(study: optuna.Study) -> None:
    running = study.ask()
    running.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    running.report(0.8, 1)
    study.enqueue_trial({"learning_rate": 1e-3})
    rows = collect(study)
    assert rows.counts["RUNNING"] == 1 and rows.counts["WAITING"] == 1
    bar = next(r for r in rows.timeline if r["number"] == running.number)
    assert bar["state"] == "RUNNING" and bar["seconds"] >= 0  # reaches now
    assert len(rows.timeline) == len(TRIALS) + 1  # the waiting trial has not started
    curve = next(c for c in rows.curves if c["number"] == running.number)
    assert curve["state"] == "RUNNING" and curve["val_loss"] == [0.8]
    page = render_page([rows])
    assert page.count('class="plotly-graph-div"') == 7
    assert "queued" in page and "running" in page
