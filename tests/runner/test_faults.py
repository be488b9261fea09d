"""Expected events with defined outcomes: a preempted trial's kept model, a full disk, what a run
says when its only trial was preempted, waiting time in the overhead."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import sweep.cli._display as run_display
from sweep.errors import ExitCode
from sweep.study import OWNER_MARKER, model_dir, overhead
from tests.conftest import TINY_STUDY, error_line, invoke

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Every parameter fixed, and a learning rate too small to change any prediction: the validation
# accuracy is the same after every epoch, so the best epoch (the first of equals) is epoch 1.
FLAT_STUDY = """\
name: flat
data: {demo: true, demo_size: 300, max_length: 32}
models:
  t1: {n_layer: 1, n_embd: 32, n_head: 2}
parameters:
  learning_rate: 1.0e-7
  batch_size: 16
  epochs: 4
  model_size: t1
metric: val_accuracy
pruner: none
trials: 1
keep_best: 1
"""


def _trials(db: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials()


@pytest.mark.slow
def test_a_resumed_trial_keeps_the_model_of_a_best_epoch_before_the_interruption(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = cli_env / "flat.yaml"
    study.write_text(FLAT_STUDY)
    epoch_done = run_display.RunDisplay.epoch_done

    def preempt_after_epoch_2(self, number, params, metrics) -> None:
        epoch_done(self, number, params, metrics)
        if metrics.epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the machine is taken back, mid-trial

    monkeypatch.setattr(run_display.RunDisplay, "epoch_done", preempt_after_epoch_2)
    result = invoke("run", str(study))
    assert result.exit_code == 0, result.output
    assert "0 finished in this run; 1 preempted, queued again" in result.stdout
    monkeypatch.setattr(run_display.RunDisplay, "epoch_done", epoch_done)
    result = invoke("run", str(study))  # the retry resumes from the checkpoint of epoch 2
    assert result.exit_code == 0, result.output

    first, retry = _trials(cli_env / "sweep.db", "flat")
    assert first.state == TrialState.FAIL and first.user_attrs["end_reason"] == "preempted"
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] == 2
    assert retry.user_attrs["best_epoch"] == 1  # reached before the interruption
    kept = model_dir(cli_env / "sweep-artifacts", "flat", first.number)
    assert (kept / "config.json").is_file() and (kept / OWNER_MARKER).is_file()
    result = invoke("best", "--export", str(cli_env / "export"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((cli_env / "export" / "manifest.json").read_text())
    assert manifest["source"] == "kept" and manifest["trial"] == retry.number


@contextlib.contextmanager
def _small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path`: a disk that really fills up (ENOSPC)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_full_disk_stops_the_worker_and_queues_the_trial_again(tiny_study: Path) -> None:
    db = tiny_study.parent / "sweep.db"
    with _small_filesystem(tiny_study.parent / "full", "64k") as full:
        result = invoke("run", str(tiny_study), "--trials", "3", "--checkpoint-dir", str(full))
    # One line saying what happened, the infrastructure's exit code; nothing was counted.
    assert result.exit_code == ExitCode.INFRASTRUCTURE, result.output
    line = error_line(result, after_warnings=True)
    assert "cannot write the checkpoint" in line and "No space left on device" in line
    failed, queued = _trials(db, "tiny")
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["end_reason"] == "infrastructure"
    assert "No space left on device" in failed.user_attrs["error"]
    assert queued.state == TrialState.WAITING and queued.user_attrs["retry_of"] == failed.number
    status = json.loads(invoke("status", "--json").stdout)
    assert status["counted_towards_trials"] == 0
    assert "infrastructure: " in status["trials"][0]["end_reason"]
    assert status["trials"][0]["end_reason"].endswith("queued again")
    # With room on the disk the study goes on: the queued trial first, then the rest.
    result = invoke("run", str(tiny_study), "--trials", "3")
    assert result.exit_code == 0, result.output
    trials = _trials(db, "tiny")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    assert trials[1].state == TrialState.COMPLETE and trials[1].params == failed.params


def test_overhead_leaves_out_time_spent_waiting_for_other_workers() -> None:
    record = {"wall_seconds": 100.0, "train_seconds": 60.0, "wait_seconds": 35.0, "trials": 5}
    info = overhead({"session:a": record})
    assert info["overhead_seconds"] == pytest.approx(5.0)
    assert info["per_trial_seconds"] == pytest.approx(1.0)


def test_status_names_the_metric_once(tiny_study: Path) -> None:
    assert invoke("run", str(tiny_study), "--trials", "1").exit_code == 0
    title = invoke("status").stdout.splitlines()[0]
    assert "study tiny (val_loss, minimize)" in title and title.count("val_loss") == 1


def test_a_malformed_url_is_one_line_without_a_traceback(cli_env: Path) -> None:
    result = invoke("status", "--storage", "postgresql+psycopg2://u:pw@h/db")
    assert result.exit_code == 2
    assert "pip install psycopg2-binary" in error_line(result)


def test_rows_dropped_for_an_empty_text_are_said(cli_env: Path) -> None:
    import pandas as pd

    rows = [{"text": f"good text {i}" if i % 7 else "  ", "label": i % 2} for i in range(140)]
    pd.DataFrame(rows).to_csv(cli_env / "train.csv", index=False)
    study = cli_env / "study.yaml"
    study.write_text(
        TINY_STUDY.replace(
            "{demo: true, demo_size: 300, max_length: 32}", "{train: train.csv, max_length: 32}"
        )
    )
    result = invoke("run", str(study), "--trials", "1")
    assert result.exit_code == 0, result.output
    assert "data: 20 rows with empty text were dropped" in result.stderr
    status = invoke("status")
    assert "data: 20 rows with empty text were dropped" in status.stdout
    assert json.loads(invoke("status", "--json").stdout)["data_dropped_empty"] == 20
