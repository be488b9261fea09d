"""The `sweep` command, in-process with CliRunner and through the installed console script.

The first half needs no training: `status`, `studies` and `best` read a storage written with
plain Optuna. The second half runs real sweeps of a tiny study (a trial takes about a second).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from sweep import __version__
from sweep.cli import app
from sweep.errors import ExitCode
from sweep.study import study_dir
from tests.conftest import REPO, error_line, invoke

optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- a storage written with plain Optuna --------------------------------------------------------


def _plain_study(url: str, name: str = "plain", direction: str = "minimize") -> optuna.Study:
    """A study shaped like one `sweep run` writes: user attrs on the study and the trials."""
    study = optuna.create_study(study_name=name, storage=url, direction=direction)
    study.set_user_attr("metric", "val_loss")
    study.set_user_attr(
        "session:2026-01-01T00:00:00+00:00:host:1",
        {"wall_seconds": 10.0, "train_seconds": 9.5, "trials": 4},
    )
    dist = {
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32]),
    }
    common = {"best_epoch": 2, "epochs_run": 2, "train_seconds": 2.0, "device": "cpu"}
    rows = [
        (optuna.trial.TrialState.COMPLETE, 0.5, {"end_reason": "complete", **common}),
        (optuna.trial.TrialState.COMPLETE, 0.3, {"end_reason": "complete", **common}),
        (
            optuna.trial.TrialState.PRUNED,
            None,
            {"end_reason": "stopped", "pruned_at_epoch": 1, "epochs_run": 1},
        ),
        (
            optuna.trial.TrialState.FAIL,
            None,
            {"end_reason": "error", "error": "RuntimeError: boom"},
        ),
    ]
    for i, (state, value, attrs) in enumerate(rows):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params={"learning_rate": 1e-3 * (i + 1), "batch_size": 16},
                distributions=dist,
                user_attrs=attrs,
                intermediate_values={1: 0.9} if state == optuna.trial.TrialState.PRUNED else None,
            )
        )
    return study


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"sweep {__version__}"


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "status", "studies", "best"):
        assert command in result.stdout


def test_readme_documents_every_command_and_option() -> None:
    import typer.main

    readme = (REPO / "README.md").read_text()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"sweep {name}" in readme, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-") and opt != "--help":
                    assert opt in readme, f"sweep {name} {opt}"
    assert "--version" in readme
    first = readme.split("```")[1].strip().splitlines()
    assert first[1].endswith("sweep run --trials 50") and first[2].endswith("&& pytest")


def test_status_table(cli_env: Path) -> None:
    _plain_study("sqlite:///sweep.db")
    result = invoke("status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "COMPLETE" in out and "PRUNED" in out and "FAIL" in out
    assert "pruned at epoch 1" in out
    assert "error: RuntimeError: boom" in out
    assert "best: trial 1, val_loss 0.3" in out
    assert "2 complete, 1 pruned, 1 fail" in out
    assert "sweep overhead: 0.50 s over 4 trials (0.125 s per trial, 5 % of 10.0 s" in out


def test_status_json(cli_env: Path) -> None:
    _plain_study("sqlite:///sweep.db")
    result = invoke("status", "plain", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["study"] == "plain" and data["direction"] == "minimize"
    assert [t["state"] for t in data["trials"]] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert data["best"]["number"] == 1 and data["best"]["value"] == 0.3
    assert data["trials"][0]["best_epoch"] == 2 and data["trials"][0]["epochs_run"] == 2
    assert data["counts"]["COMPLETE"] == 2 and data["counts"]["FAIL"] == 1
    assert data["counted_towards_trials"] == 4
    assert data["overhead"]["per_trial_seconds"] == pytest.approx(0.125)
    assert data["overhead"]["percent_of_wall"] == pytest.approx(5.0)


def test_status_storage_option_and_env(cli_env: Path) -> None:
    _plain_study(f"sqlite:///{cli_env / 'other.db'}", name="o")
    assert invoke("status", "--storage", "sqlite:///other.db").exit_code == 0
    result = invoke("status", env={"SWEEP_STORAGE": "sqlite:///other.db"})
    assert result.exit_code == 0 and "study o" in result.stdout


def test_status_needs_a_name_when_there_are_several(cli_env: Path) -> None:
    _plain_study("sqlite:///sweep.db", name="a")
    _plain_study("sqlite:///sweep.db", name="b")
    result = invoke("status")
    assert result.exit_code == 2
    assert "holds 2 studies (a, b); name one" in error_line(result)
    result = invoke("status", "aa")
    assert result.exit_code == 2
    assert "no study named 'aa'" in error_line(result) and "did you mean 'a'" in result.stderr


def test_status_of_a_missing_database_creates_nothing(cli_env: Path) -> None:
    result = invoke("status")
    assert result.exit_code == 2
    assert "no study database at sweep.db" in error_line(result)
    assert not (cli_env / "sweep.db").exists()


def test_studies(cli_env: Path) -> None:
    _plain_study("sqlite:///sweep.db", name="low")
    _plain_study("sqlite:///sweep.db", name="high", direction="maximize")
    result = invoke("studies")
    assert result.exit_code == 0, result.output
    assert "low" in result.stdout and "high" in result.stdout
    rows = {r["name"]: r for r in json.loads(invoke("studies", "--json").stdout)}
    assert rows["low"]["best_value"] == 0.3 and rows["low"]["direction"] == "minimize"
    assert rows["high"]["best_value"] == 0.5 and rows["high"]["direction"] == "maximize"
    assert rows["low"]["trials"] == 4


def test_best_without_export(cli_env: Path) -> None:
    _plain_study("sqlite:///sweep.db")
    result = invoke("best", "plain")
    assert result.exit_code == 0, result.output
    assert "best: trial 1, val_loss 0.3" in result.stdout
    data = json.loads(invoke("best", "--json").stdout)
    assert data["number"] == 1 and data["user_attrs"]["best_epoch"] == 2


def test_best_within_a_budget(cli_env: Path) -> None:
    study = optuna.create_study(study_name="costs", storage="sqlite:///sweep.db")
    study.set_user_attr("metric", "val_loss")
    # (value, training seconds, GPUs): costs 100, 60 and 10 (a CPU trial counts as one device).
    for value, seconds, gpus in [(0.3, 100.0, 1), (0.4, 30.0, 2), (0.5, 10.0, 0)]:
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"learning_rate": 1e-3},
                distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2)},
                user_attrs={"train_seconds": seconds, "gpus": gpus, "end_reason": "complete"},
            )
        )
    assert "best: trial 0" in invoke("best").stdout
    result = invoke("best", "--budget", "80")
    assert result.exit_code == 0, result.output
    assert "best: trial 1" in result.stdout and "cost: 60 s (budget 80 s)" in result.stdout
    data = json.loads(invoke("best", "--budget", "50", "--json").stdout)
    assert data["number"] == 2 and data["cost"] == 10.0

    before = (cli_env / "sweep.db").read_bytes()
    for budget, message in [
        ("5", "no complete trial of study 'costs' costs at most 5 s; the cheapest costs 10 s"),
        ("0", "--budget must be a positive number of seconds, got 0.0"),
    ]:
        result = invoke("best", "--budget", budget)
        assert result.exit_code == 2 and message in error_line(result), result.output
    assert (cli_env / "sweep.db").read_bytes() == before


def test_best_of_a_study_without_complete_trials(cli_env: Path) -> None:
    optuna.create_study(study_name="empty", storage="sqlite:///sweep.db")
    result = invoke("best", "empty")
    assert result.exit_code == 2
    assert "has no complete trial yet" in error_line(result)


def test_status_does_not_import_torch(cli_env: Path) -> None:
    _plain_study("sqlite:///sweep.db")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sweep.cli import app\n"
        "for args in (['status'], ['status', '--json'], ['studies'], ['best']):\n"
        "    result = CliRunner().invoke(app, args, catch_exceptions=False)\n"
        "    assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'sweep.train', 'sweep.trial'))\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cli_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


# -- real sweeps of the tiny study --------------------------------------------------------------


def _trials(db: Path, study: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials


def _states(db: Path) -> list[str]:
    """Trial states read with plain sqlite3 (works while another process writes: WAL)."""
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT state FROM trials ORDER BY number").fetchall()
        except sqlite3.OperationalError:  # the file exists before Optuna has created its tables
            return []
        return [row[0] for row in rows]


TRIAL_ATTRS = {
    "end_reason",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "samples_per_s",
    "tokens_per_s",
    "peak_memory_mb",
    "device",
    "n_params",
    "micro_batch",
    "micro_batch_halvings",
    "val_accuracy",
    "seed",
}


@pytest.mark.slow
def test_run_continue_status_and_export(tiny_study: Path) -> None:
    db = tiny_study.parent / "sweep.db"
    result = invoke("run", str(tiny_study), "--trials", "3")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and all("COMPLETE" in line for line in lines), result.stdout
    assert "done: study tiny has 3 of 3 trials (3 finished in this run)" in result.stdout
    assert "best: trial" in result.stdout and "this run: overhead" in result.stdout

    trials = _trials(db)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for t in trials:
        assert set(t.user_attrs) >= TRIAL_ATTRS, TRIAL_ATTRS - set(t.user_attrs)
        assert t.user_attrs["end_reason"] == "complete"
        assert t.value == pytest.approx(t.user_attrs["val_loss"])
        assert len(t.intermediate_values) == t.user_attrs["epochs_run"]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert study.user_attrs["config"]["name"] == "tiny"
    assert "space_signature" in study.user_attrs and study.user_attrs["metric"] == "val_loss"
    assert len(study.user_attrs["data_content_hash"]) == 64
    # keep_best: 1 -> only the best trial's model is left
    folder = study_dir(tiny_study.parent / "sweep-artifacts", "tiny")
    kept = sorted(p.name for p in folder.glob("trial-*"))
    assert kept == [f"trial-{study.best_trial.number}"]

    # Continuing: the finished trials count towards --trials.
    result = invoke("run", str(tiny_study), "--trials", "5")
    assert result.exit_code == 0, result.output
    assert "continuing (3 finished trials)" in result.stderr
    assert "has 5 of 5 trials (2 finished in this run)" in result.stdout
    assert [t.number for t in _trials(db)] == [0, 1, 2, 3, 4]
    # a continued session does not replay the first session's sampler stream
    assert len({t.params["learning_rate"] for t in _trials(db)}) == 5
    result = invoke("run", str(tiny_study), "--trials", "5")
    assert result.exit_code == 0 and "(0 finished in this run)" in result.stdout
    assert len(_trials(db)) == 5

    # status / studies
    data = json.loads(invoke("status", "--json").stdout)
    assert data["counts"]["COMPLETE"] == 5 and data["overhead"]["trials"] == 5
    assert data["overhead"]["per_trial_seconds"] is not None
    table = invoke("status").stdout
    assert "sweep overhead:" in table and "complete" in table
    assert "tiny" in invoke("studies").stdout

    # best --export: a folder transformers loads, predicting the trial's accuracy
    out = tiny_study.parent / "export"
    result = invoke("best", "tiny", "--export", str(out))
    assert result.exit_code == 0, result.output
    assert "copied the kept model" in result.stderr
    best = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").best_trial
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["study"] == "tiny" and manifest["trial"] == best.number
    assert manifest["params"] == best.params and manifest["source"] == "kept"
    assert manifest["data_content_hash"] == study.user_attrs["data_content_hash"]
    assert manifest["seed"] == 0
    assert set(manifest["versions"]) >= {"sweep", "torch", "transformers", "optuna"}
    accuracy = _exported_accuracy(out, tiny_study)
    assert accuracy == pytest.approx(best.user_attrs["val_accuracy"], abs=0.02)

    # an export never overwrites
    result = invoke("best", "tiny", "--export", str(out))
    assert result.exit_code == 2 and "not an empty directory" in error_line(result)


def _exported_accuracy(folder: Path, study_file: Path) -> float:
    """Load an exported folder with plain transformers and score it on the study's validation."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sweep.config import load_study
    from sweep.data import load_text_data

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    labels = json.loads((folder / "labels.json").read_text())
    if isinstance(labels, dict):  # {"0": "negative", ...}
        labels = [labels[str(i)] for i in range(len(labels))]
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    assert [id2label[i] for i in range(len(id2label))] == list(labels)

    data = load_text_data(load_study(study_file).data)
    assert tuple(labels) == data.label_names
    correct = 0
    for start in range(0, len(data.val_texts), 64):
        texts = data.val_texts[start : start + 64]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            ids = model(**batch).logits.argmax(-1)
        assert int(ids.min()) >= 0 and int(ids.max()) < len(labels)
        correct += int((ids.numpy() == data.val_labels[start : start + 64]).sum())
    return correct / len(data.val_texts)


@pytest.mark.slow
def test_export_retrains_when_the_model_was_not_kept(tiny_study: Path) -> None:
    tiny_study.write_text(tiny_study.read_text() + "keep_best: 0\n")
    assert invoke("run", str(tiny_study), "--trials", "1").exit_code == 0
    assert not list((tiny_study.parent / "sweep-artifacts").glob("tiny/trial-*"))
    out = tiny_study.parent / "export"
    result = invoke("best", "--export", str(out))
    assert result.exit_code == 0, result.output
    assert "retrained it from the recorded parameters and seed" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "retrained"
    best = _trials(tiny_study.parent / "sweep.db")[0]
    # Same parameters, same seed, same data, CPU: the same model.
    assert _exported_accuracy(out, tiny_study) == pytest.approx(
        best.user_attrs["val_accuracy"], abs=0.02
    )


@pytest.mark.slow
def test_changed_space_is_refused_and_storage_unchanged(tiny_study: Path, digest) -> None:
    db = tiny_study.parent / "sweep.db"
    assert invoke("run", str(tiny_study), "--trials", "1").exit_code == 0
    before = digest(db)
    tiny_study.write_text(tiny_study.read_text().replace("max: 1.0e-2", "max: 2.0e-2"))
    result = invoke("run", str(tiny_study), "--trials", "2")
    assert result.exit_code == 2
    line = error_line(result)
    assert "different search space" in line and "learning_rate" in line
    assert digest(db) == before
    # ... and under another name it is a new study next to the old one
    result = invoke("run", str(tiny_study), "--trials", "1", "--name", "tiny-wider")
    assert result.exit_code == 0, result.output
    assert {r["name"] for r in json.loads(invoke("studies", "--json").stdout)} == {
        "tiny",
        "tiny-wider",
    }


@pytest.mark.slow
def test_enqueued_trials_run_first_and_only_once(tiny_study: Path) -> None:
    tiny_study.write_text(
        tiny_study.read_text() + "enqueue:\n  - {learning_rate: 0.005, batch_size: 16, epochs: 1}\n"
    )
    assert invoke("run", str(tiny_study), "--trials", "1").exit_code == 0
    assert invoke("run", str(tiny_study), "--trials", "2").exit_code == 0
    trials = _trials(tiny_study.parent / "sweep.db")
    assert trials[0].params == {"learning_rate": 0.005, "batch_size": 16, "epochs": 1}
    assert len(trials) == 2 and trials[1].params != trials[0].params


@pytest.mark.slow
def test_timeout_starts_no_new_trial(tiny_study: Path) -> None:
    result = invoke("run", str(tiny_study), "--trials", "50", "--timeout", "0.01")
    assert result.exit_code == 0, result.output
    assert "has 1 of 50 trials (1 finished in this run)" in result.stdout


VALID_DATA_CSV = "text,label\n" + "".join(
    f"good movie {i},pos\nbad movie {i},neg\n" for i in range(40)
)


def _edit(old: str, new: str):
    return lambda text: text.replace(old, new)


BAD_INPUTS = [
    # (id, edit of the study file, extra args, words in the error line)
    ("yaml", lambda t: t + "parameters: [unclosed\n", [], "tiny.yaml:"),
    ("unknown key", lambda t: t + "sampeler: tpe\n", [], "sampler"),
    (
        "min > max",
        _edit("min: 1.0e-3, max: 1.0e-2", "min: 1.0e-2, max: 1.0e-3"),
        [],
        "learning_rate",
    ),
    ("log min 0", _edit("min: 1.0e-3, max: 1.0e-2", "min: 0, max: 1.0e-2"), [], "learning_rate"),
    ("empty values", _edit("values: [16, 32]", "values: []"), [], "batch_size"),
    ("unknown model size", _edit("model_size: t1", "model_size: huge"), [], "huge"),
    ("unknown sampler", _edit("sampler: tpe", "sampler: tpee"), [], "tpe"),
    ("unknown pruner", _edit("pruner: none", "pruner: medain"), [], "median"),
    ("unknown metric", _edit("name: val_loss", "name: val_los"), [], "val_loss"),
    ("trials 0", lambda t: t, ["--trials", "0"], "--trials"),
    ("timeout 0", lambda t: t, ["--timeout", "0"], "--timeout"),
    ("storage url", lambda t: t, ["--storage", "sqlite:/x.db"], "malformed storage URL"),
    ("storage kind", lambda t: t, ["--storage", "mongodb://h/db"], "unsupported storage URL"),
    (
        "data column",
        _edit("data: {demo: true, demo_size: 300, max_length: 32}", "data: {train: data.csv}"),
        [],
        "label",
    ),
    (
        "data file",
        _edit("data: {demo: true, demo_size: 300, max_length: 32}", "data: {train: none.csv}"),
        [],
        "none.csv",
    ),
]


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
@pytest.mark.parametrize(
    ("edit", "args", "words"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_one_line_exit_2_and_leaves_storage_alone(
    tiny_study: Path, digest, edit, args: list[str], words: str, existing: bool
) -> None:
    (tiny_study.parent / "data.csv").write_text(VALID_DATA_CSV.replace("label", "sentiment", 1))
    db = tiny_study.parent / "sweep.db"
    if existing:
        _plain_study("sqlite:///sweep.db", name="tiny")
    before = digest(db)
    tiny_study.write_text(edit(tiny_study.read_text()))
    result = invoke("run", str(tiny_study), *args)
    assert result.exit_code == 2, result.output
    assert words in error_line(result)
    assert digest(db) == before
    assert not (tiny_study.parent / "sweep-artifacts").exists()


def test_unreachable_database_is_an_infrastructure_failure(tiny_study: Path) -> None:
    url = "postgresql+psycopg://u:pw@127.0.0.1:1/db"
    started = time.monotonic()
    result = invoke("run", str(tiny_study), "--storage", url, "--db-wait", "2")
    # It waited for the database as long as it was told to, then gave up with exit code 3
    # (retry later or elsewhere), not 2 (a mistake in the input).
    assert time.monotonic() - started >= 2
    assert result.exit_code == ExitCode.INFRASTRUCTURE == 3
    line = error_line(result, after_warnings=True)  # after the warning that it is retrying
    assert "cannot open storage" in line and "127.0.0.1:1" in line and "pw" not in line
    assert "tried for 2 s" in line


def _sweep_command() -> list[str]:
    script = shutil.which("sweep") or str(Path(sys.executable).parent / "sweep")
    return [script] if Path(script).exists() else [sys.executable, "-m", "sweep.cli"]


@pytest.mark.slow
def test_console_script(tiny_study: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [*_sweep_command(), "run", "tiny.yaml", "--trials", "1"],
        cwd=tiny_study.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "done: study tiny has 1 of 1 trials" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "status", "--json"],
        cwd=tiny_study.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["COMPLETE"] == 1
    proc = subprocess.run(
        [*_sweep_command(), "run", "tiny.yaml", "--trials", "0"],
        cwd=tiny_study.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --trials must be at least 1, got 0"


@pytest.mark.slow
def test_ctrl_c_on_the_bundled_demo(cli_env: Path) -> None:
    """`sweep run` with no study file runs the demo into ./sweep.db; SIGINT stops it cleanly."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "run", "--trials", "50"],
        cwd=cli_env,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = cli_env / "sweep.db"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and "RUNNING" in _states(db):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)  # well inside the fine-tune
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: study demo has" in out
    states = _states(db)
    assert "RUNNING" not in states
    last = _trials(db, "demo")[-1]
    assert last.state == optuna.trial.TrialState.FAIL
    assert last.user_attrs["end_reason"] == "interrupted"
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("SWEEP_TEST_POSTGRES_URL"), reason="SWEEP_TEST_POSTGRES_URL not set"
)
def test_run_on_postgres(tiny_study: Path) -> None:
    url = os.environ["SWEEP_TEST_POSTGRES_URL"]
    name = f"tiny-{os.getpid()}-{time.time_ns()}"
    try:
        result = invoke("run", str(tiny_study), "--trials", "2", "--name", name, "--storage", url)
        assert result.exit_code == 0, result.output
        assert "has 2 of 2 trials" in result.stdout
        data = json.loads(invoke("status", name, "--storage", url, "--json").stdout)
        assert data["counted_towards_trials"] == 2
        result = invoke("studies", "--json", env={"SWEEP_STORAGE": url})
        assert name in {row["name"] for row in json.loads(result.stdout)}
        # artifacts of a non-SQLite storage go to ./sweep-artifacts
        assert list(study_dir(tiny_study.parent / "sweep-artifacts", name).glob("trial-*"))
    finally:
        optuna.delete_study(study_name=name, storage=url)
