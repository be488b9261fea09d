"""`sweep dashboard`: optuna-dashboard on the study storage.

The fast tests serve it in-process and ask its API: read-only by default (every write answered
405, the storage read back unchanged), writable with allow_writes, on the loopback unless
allow_remote. The slow ones run `sweep dashboard` itself: beside a real `sweep run` worker on
one SQLite file (its API and page read while the worker writes), and in Chromium, where the
page must read with GET only and a DELETE sent from it must be refused.
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
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from sweep.cli import app
from sweep.errors import ConfigError
from sweep.report.dashboard import READ_ONLY_MESSAGE, Dashboard
from sweep.storage import close_storage, open_storage, study_names
from tests.report.test_report import make_study

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


def _request(
    url: str, method: str, payload: Any = None, body: bytes | None = None
) -> tuple[int, Message, bytes]:
    """Send one request; (status, headers, body) whatever the status (urllib raises on 4xx)."""
    if payload is not None:
        body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


@contextmanager
def _serving(url: str, host: str = "127.0.0.1", **options: bool) -> Iterator[Dashboard]:
    """A Dashboard on `url` served from a thread on a free port, closed afterwards."""
    dashboard = Dashboard(url, host, 0, **options)
    thread = threading.Thread(target=dashboard.serve_forever, daemon=True)
    thread.start()
    try:
        yield dashboard
    finally:
        dashboard.close()
        thread.join(timeout=30)
    assert not thread.is_alive()


def _snapshot(url: str) -> dict[str, Any]:
    """Everything a write through the dashboard could change, read from the storage itself:
    per study its attributes (notes live in the system ones) and its trials."""
    storage = open_storage(url, must_exist=True)
    try:
        return {
            study.study_name: (
                study.system_attrs,
                study.user_attrs,
                [
                    (t.number, t.state.name, t.values, t.user_attrs)
                    for t in storage.get_all_trials(study._study_id, deepcopy=False)
                ],
            )
            for study in storage.get_all_studies()
        }
    finally:
        close_storage(storage)


def _study_with_a_running_trial(url: str) -> int:
    """make_study's "demo" plus one running trial (what the dashboard's "Fail" button ends);
    returns that trial's id."""
    study = make_study(url, "demo")
    return study.ask()._trial_id


def _writes(study_id: int, trial_id: int) -> list[tuple[str, str, Any, int]]:
    """Requests that change the storage on a writable dashboard (optuna-dashboard's own API),
    with the status each gets there: a note, a trial state, a new study, a deleted study."""
    return [
        ("PUT", f"/api/studies/{study_id}/note", {"version": 1, "body": "edited"}, 204),
        ("POST", f"/api/trials/{trial_id}/tell", {"state": "Fail"}, 204),
        ("POST", "/api/studies", {"study_name": "created", "directions": ["minimize"]}, 201),
        ("DELETE", f"/api/studies/{study_id}", None, 204),
    ]


def test_read_only_dashboard_refuses_every_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    trial_id = _study_with_a_running_trial(url)
    before = _snapshot(url)
    with _serving(url) as dashboard:
        assert dashboard.describe().startswith("optuna-dashboard (read-only) for ")
        base = f"http://127.0.0.1:{dashboard.port}"
        study_id = _study_id(base, "demo")
        assert study_id is not None
        refused = [
            (method, path, payload) for method, path, payload, _ in _writes(study_id, trial_id)
        ]
        refused += [
            ("PATCH", f"/api/studies/{study_id}", {"study_name": "patched"}),
            ("OPTIONS", f"/api/studies/{study_id}", None),
            ("POST", f"/api/studies/{study_id}/rename", {"study_name": "renamed"}),
            ("PUT", f"/api/studies/{study_id}/{trial_id}/note", {"version": 1, "body": "x"}),
            # Bottle upper-cases the method before routing: "delete" would be a DELETE.
            ("delete", f"/api/studies/{study_id}", None),
            ("TRACE", "/dashboard", None),
        ]
        for method, path, payload in refused:
            status, headers, body = _request(base + path, method, payload)
            assert (method, path, status) == (method, path, 405), body
            assert headers["Allow"] == "GET, HEAD"
            assert headers["Content-Type"] == "text/plain; charset=utf-8"
            assert body == READ_ONLY_MESSAGE
        # A large body is read and dropped, so the 405 arrives instead of a connection reset.
        status, _, body = _request(f"{base}/api/studies", "POST", body=b"x" * 900_000)
        assert status == 405 and body == READ_ONLY_MESSAGE

        # Reads still work, HEAD included.
        detail = _get(f"{base}/api/studies/{study_id}")
        assert detail["name"] == "demo" and len(detail["trials"]) == 9
        status, headers, body = _request(f"{base}/api/studies/{study_id}", "HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
        status, _, body = _request(f"{base}/dashboard", "GET")
        assert status == 200 and b"bundle.js" in body
    assert _snapshot(url) == before


def test_allow_writes_serves_the_whole_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    trial_id = _study_with_a_running_trial(url)
    with _serving(url, allow_writes=True) as dashboard:
        assert dashboard.describe().startswith("optuna-dashboard (writable) for ")
        assert dashboard.remote_warning() is None  # on the loopback
        base = f"http://127.0.0.1:{dashboard.port}"
        study_id = _study_id(base, "demo")
        assert study_id is not None
        writes = _writes(study_id, trial_id)
        for method, path, payload, expected in writes[:-1]:
            status, _, body = _request(base + path, method, payload)
            assert (method, path, status) == (method, path, expected), body
        # Read back from the storage, not from the dashboard that wrote it.
        after = _snapshot(url)
        assert set(after) == {"demo", "created"}
        system_attrs, _, trials = after["demo"]
        assert "edited" in system_attrs.values()  # the note's text
        assert trials[-1][1] == "FAIL"  # the running trial, ended from the dashboard
        method, path, payload, expected = writes[-1]
        assert _request(base + path, method, payload)[0] == expected
        assert set(_snapshot(url)) == {"created"}


def _fake_resolver(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Make `names` resolve to the given addresses: no DNS server here answers for a name we
    choose, and /etc/hosts is not ours to edit. Other names resolve as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in names:
            return real(host, port, *args, **kwargs)
        found = []
        for address in names[host]:
            found += real(address, port, *args, **kwargs)
        return found

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_dashboard_refuses_a_remote_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process, so that a regression fails here instead of serving forever (the command's
    # own one-line error is checked in a subprocess below, with a deadline).
    url = f"sqlite:///{tmp_path / 'd.db'}"
    make_study(url, "demo")
    _fake_resolver(
        monkeypatch,
        {"lab-box.example": ["192.0.2.7"], "mixed.example": ["127.0.0.1", "192.0.2.8"]},
    )
    refused = {
        "0.0.0.0": "0.0.0.0",
        "::": "::",
        "0": "0 (0.0.0.0)",
        "192.0.2.7": "192.0.2.7",
        "fd00::7": "fd00::7",
        "lab-box.example": "lab-box.example (192.0.2.7)",
        # Every address must be loopback: which one the system would use is not ours to know.
        "mixed.example": "mixed.example (192.0.2.8)",
    }
    for host, shown in refused.items():
        with pytest.raises(ConfigError) as raised:
            Dashboard(url, host, 0, allow_writes=True).close()
        assert str(raised.value) == (
            f"refusing to listen on {shown}: other machines could reach the dashboard, "
            "which has no authentication; use 127.0.0.1 (the default), or pass --allow-remote"
        )


def test_dashboard_listens_on_loopback_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    make_study(url, "demo")
    # loop.example resolves (here only) to 127.0.0.3: serving on it at all shows that the
    # server binds the address that was checked, not the name resolved a second time.
    _fake_resolver(monkeypatch, {"loop.example": ["127.0.0.3"]})
    hosts = {"localhost": "127.0.0.1", "127.0.0.2": "127.0.0.2", "loop.example": "127.0.0.3"}
    if socket.has_ipv6:
        hosts["::1"] = "[::1]"
    for host, shown in hosts.items():
        with _serving(url, host) as dashboard:
            assert dashboard.url == f"http://{shown}:{dashboard.port}/dashboard"
            assert dashboard.remote_warning() is None
            base = dashboard.url.removesuffix("/dashboard")
            study_id = _study_id(base, "demo")
            assert study_id is not None
            assert _request(f"{base}/api/studies/{study_id}", "DELETE")[0] == 405
    assert _has_study(url, "demo")


def test_allow_remote_warns_that_anyone_can_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    make_study(url, "demo")
    with _serving(url, "0.0.0.0", allow_remote=True) as dashboard:
        assert dashboard.remote_warning() == (
            "warning: the dashboard has no authentication and listens on 0.0.0.0: anyone who "
            f"can reach {dashboard.url} can read the studies"
        )
    with _serving(url, "0.0.0.0", allow_remote=True, allow_writes=True) as dashboard:
        assert dashboard.remote_warning() == (
            "warning: the dashboard has no authentication and listens on 0.0.0.0: anyone who "
            f"can reach {dashboard.url} can read, change and delete the studies"
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


def test_remote_host_is_refused_in_one_line(cli_env: Path) -> None:
    url = f"sqlite:///{cli_env / 'd.db'}"
    make_study(url, "demo")
    refused = _sweep("dashboard", "--storage", url, "--host", "0.0.0.0", "--port", "0", cwd=cli_env)
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 2, err
    assert out == ""
    assert err.splitlines() == [
        "error: refusing to listen on 0.0.0.0: other machines could reach the dashboard, "
        "which has no authentication; use 127.0.0.1 (the default), or pass --allow-remote"
    ]


def test_allow_remote_serves_read_only_with_a_warning(cli_env: Path) -> None:
    url = f"sqlite:///{cli_env / 'd.db'}"
    make_study(url, "demo")
    dashboard = _sweep(
        "dashboard",
        "--storage",
        url,
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--port",
        "0",
        cwd=cli_env,
    )
    try:
        assert dashboard.stdout is not None and dashboard.stderr is not None
        line = dashboard.stdout.readline()
        match = re.fullmatch(
            r"optuna-dashboard \(read-only\) for sqlite:///\S+ at (http://\S+:(\d+)/dashboard) "
            r"\(Ctrl-C to stop\)\n",
            line,
        )
        assert match, line
        # Written before the startup line (typer.echo flushes each line).
        assert dashboard.stderr.readline() == (
            "warning: the dashboard has no authentication and listens on 0.0.0.0: anyone who "
            f"can reach {match.group(1)} can read the studies\n"
        )
        # 0.0.0.0 includes the loopback: ask there, it is all this test may rely on.
        base = f"http://127.0.0.1:{match.group(2)}"
        study_id = _study_id(base, "demo")
        assert study_id is not None
        assert _request(f"{base}/api/studies/{study_id}", "DELETE")[0] == 405
    finally:
        if dashboard.poll() is None:
            dashboard.send_signal(signal.SIGINT)
        _, err = dashboard.communicate(timeout=120)
    assert dashboard.returncode == 0, err
    assert err.strip() == "dashboard stopped"
    assert _has_study(url, "demo")


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (.ci/setup.d/chromium.sh)",
)
def test_read_only_dashboard_in_a_browser(cli_env: Path) -> None:
    """The page shows studies and trials with GET alone, and a DELETE sent from it is refused."""
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{cli_env / 'd.db'}"
    make_study(url, "demo")
    before = _snapshot(url)
    dashboard = _sweep("dashboard", "--storage", url, "--port", "0", cwd=cli_env)
    try:
        assert dashboard.stdout is not None
        line = dashboard.stdout.readline()
        match = re.search(r"\(read-only\) .* at (http://127\.0\.0\.1:\d+/dashboard) ", line)
        assert match, line
        page_url = match.group(1)
        study_id = _study_id(page_url.removesuffix("/dashboard"), "demo")
        assert study_id is not None
        api = f"{page_url.removesuffix('/dashboard')}/api/studies/{study_id}"

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            methods: list[tuple[str, str]] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: methods.append((r.method, r.url)))
            # The study list, the study's page (its figures) and its trials.
            page.goto(page_url)
            page.get_by_text(re.compile(r"^\d+\. demo$")).first.wait_for(timeout=120_000)
            page.goto(f"{page_url}/studies/{study_id}")
            page.get_by_text("Best Trial (number=3)").first.wait_for(timeout=120_000)
            page.goto(f"{page_url}/studies/{study_id}/trials")
            page.get_by_text("Trial 7", exact=True).first.wait_for(timeout=120_000)
            listed = page.get_by_text(re.compile(r"^\d+ Trials$")).first.inner_text()
            # optuna-dashboard's page reads with GET only: read-only loses nothing of it.
            assert [m for m in methods if m[0] != "GET"] == []

            answer = page.evaluate(
                """async url => {
                    const r = await fetch(url, {method: 'DELETE'});
                    return [r.status, r.headers.get('Allow'), await r.text()];
                }""",
                api,
            )
            assert answer == [405, "GET, HEAD", READ_ONLY_MESSAGE.decode()]
            page.reload()
            page.get_by_text("Trial 7", exact=True).first.wait_for(timeout=120_000)
            page.screenshot(path=str(cli_env / "read-only.png"), full_page=True)
            browser.close()
        assert errors == []
        assert listed == "8 Trials"
    finally:
        if dashboard.poll() is None:
            dashboard.send_signal(signal.SIGINT)
        _, err = dashboard.communicate(timeout=120)
    assert dashboard.returncode == 0, err
    assert _snapshot(url) == before
