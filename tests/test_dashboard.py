"""`sweep dashboard`: optuna-dashboard on the study storage.

The fast tests serve it in-process and ask its API; the slow one runs `sweep dashboard` and a
real `sweep run` worker on one SQLite file, reads the dashboard's API and page (Chromium) while
the worker writes, and checks that the worker did not fail.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_report import make_study
from typer.testing import CliRunner

from sweep.cli import app
from sweep.dashboard import Dashboard
from sweep.storage import close_storage, open_storage, study_names

CHROMIUM = Path("/usr/bin/chromium")


def _get(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def _study_id(base: str, name: str) -> int | None:
    for s in _get(f"{base}/api/studies")["study_summaries"]:
        if s["study_name"] == name:
            return int(s["study_id"])
    return None


def test_dashboard_api_answers_for_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    make_study(url, "demo")
    dashboard = Dashboard(url, "127.0.0.1", 0)
    thread = threading.Thread(target=dashboard.serve_forever, daemon=True)
    thread.start()
    try:
        assert dashboard.url == f"http://127.0.0.1:{dashboard.port}/dashboard"
        base = f"http://127.0.0.1:{dashboard.port}"
        study_id = _study_id(base, "demo")
        assert study_id is not None
        detail = _get(f"{base}/api/studies/{study_id}")
        assert detail["name"] == "demo"
        assert [t["state"] for t in detail["trials"]].count("Complete") == 5
        assert {t["number"] for t in detail["trials"]} == set(range(8))
    finally:
        dashboard.close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_dashboard_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["dashboard", "--storage", "sqlite:///missing.db"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no study database at missing.db")
    assert not (tmp_path / "missing.db").exists()  # a reader never creates the database

    make_study("sqlite:///d.db", "demo")
    result = runner.invoke(app, ["dashboard", "--storage", "sqlite:///d.db", "--port", "70000"])
    assert result.exit_code == 2 and "--port must be between 0 and 65535" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app, ["dashboard", "--storage", "sqlite:///d.db", "--port", str(port)]
        )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use; pick another with --port"
    )


def _sweep(*args: str, cwd: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """`sweep ARGS...` in a subprocess (the installed entry point's code, this interpreter)."""
    code = "import sys; from sweep.cli import main; sys.argv[0] = 'sweep'; main()"
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("SWEEP_STORAGE", None)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def _wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _has_study(url: str, name: str) -> bool:
    storage = open_storage(url, must_exist=True)
    try:
        return name in study_names(storage)
    finally:
        close_storage(storage)


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (.ci/setup.d/chromium.sh)",
)
def test_dashboard_beside_a_running_worker(tiny_study: Path, cli_env: Path) -> None:
    from playwright.sync_api import sync_playwright

    n_trials = 12
    db = cli_env / "live.db"
    url = f"sqlite:///{db}"
    worker = _sweep(
        "run", str(tiny_study), "--trials", str(n_trials), "--storage", url, cwd=cli_env
    )
    dashboard = None
    try:
        # The worker creates the database after preparing the data (torch import, tokenizer).
        _wait_for(lambda: db.exists() and _has_study(url, "tiny"), 180, "the study")
        dashboard = _sweep("dashboard", "--storage", url, "--port", "0", cwd=cli_env)
        assert dashboard.stdout is not None
        line = dashboard.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/dashboard) \(Ctrl-C to stop\)", line)
        assert match, line
        page_url = match.group(1)
        base = page_url.removesuffix("/dashboard")
        study_id = _study_id(base, "tiny")
        assert study_id is not None

        # Hammer the API while the worker writes: every answer is a consistent snapshot.
        seen: list[int] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                seen.append(len(_get(f"{base}/api/studies/{study_id}")["trials"]))
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{page_url}/studies/{study_id}/trials")
            page.get_by_text("Trial 0", exact=True).first.wait_for(timeout=60_000)
            listed = page.get_by_text(re.compile(r"^\d+ Trials$")).first.inner_text()
            page.screenshot(path=str(cli_env / "dashboard.png"), full_page=True)
            browser.close()
        assert errors == []
        assert int(listed.split()[0]) >= 1

        _out, err = worker.communicate(timeout=300)
        stop.set()
        poller.join(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
        if dashboard is not None and dashboard.poll() is None:
            dashboard.send_signal(signal.SIGINT)

    assert worker.returncode == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * n_trials, [t.user_attrs.get("error") for t in study.trials]
    # The dashboard read while the worker wrote: it saw the study grow.
    assert seen and seen[0] < n_trials and seen == sorted(seen)

    assert dashboard is not None
    _, dash_err = dashboard.communicate(timeout=30)
    assert dashboard.returncode == 0, dash_err
    assert "dashboard stopped" in dash_err and "Traceback" not in dash_err
    assert (cli_env / "dashboard.png").stat().st_size > 10_000
