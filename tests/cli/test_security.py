"""What a study name, a study file or a storage URL cannot do: leave their folders, delete what
sweep did not make, leak a password, exhaust the machine, or crash a table with markup."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sweep.errors import ConfigError
from sweep.storage import redact
from sweep.study import OWNER_MARKER, study_dir, study_dirname, within
from tests.conftest import TINY_STUDY, error_line, invoke

optuna.logging.set_verbosity(optuna.logging.WARNING)

POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES_URL")


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- 1. a study name is never a path ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ABSOLUTE/victim", "../../escape", "..", "a/../../b", "./trial-0", "sp ace/ünï\\cödé", "~"],
)
def test_a_study_name_never_leaves_the_artifacts_folder(cli_env: Path, name: str) -> None:
    victim = cli_env / "victim"
    for n in (0, 1):
        (victim / f"trial-{n}").mkdir(parents=True)
        (victim / f"trial-{n}" / "precious.txt").write_text(f"user file {n}")
    name = name.replace("ABSOLUTE", str(cli_env))
    outside = cli_env.parent / "escape"
    study = cli_env / "study.yaml"
    text = TINY_STUDY.replace("name: tiny", f"name: {json.dumps(name)}")
    study.write_text(text + "keep_best: 1\n")
    before_outside = set(cli_env.parent.iterdir())

    result = invoke("run", str(study), "--trials", "3")
    assert result.exit_code == 0, result.output

    assert _files_under(victim) == {
        "trial-0/precious.txt": b"user file 0",
        "trial-1/precious.txt": b"user file 1",
    }
    assert not outside.exists() and set(cli_env.parent.iterdir()) == before_outside
    artifacts = cli_env / "sweep-artifacts"
    kept = sorted(artifacts.rglob("config.json"))
    assert len(kept) == 1 and kept[0].parent.parent == study_dir(artifacts, name)
    assert (kept[0].parent / OWNER_MARKER).is_file()
    # The kept model is found again by its study's name: the export copies it.
    result = invoke("best", name, "--export", str(cli_env / "export"))
    assert result.exit_code == 0, result.output
    assert json.loads((cli_env / "export" / "manifest.json").read_text())["source"] == "kept"
    assert not (cli_env / "export" / OWNER_MARKER).exists()


def test_folder_names_are_safe_and_distinct() -> None:
    names = ["a b", "a/b", "a\\b", "..", ".", "", "ü", "x" * 300, "trial-0", "-rf", ".hidden"]
    folders = [study_dirname(n) for n in names]
    assert len(set(folders)) == len(names)
    for folder in folders:
        assert "/" not in folder and "\\" not in folder and folder not in (".", "..")
        assert not folder.startswith((".", "-")) and len(folder) <= 60


def test_a_symlink_cannot_lead_out_of_the_root(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "artifacts", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / study_dirname("s")).symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="outside"):
        study_dir(root, "s")
    assert within(root, "ok") == (root / "ok").resolve()


def test_a_study_name_with_control_characters_is_refused(cli_env: Path) -> None:
    study = cli_env / "study.yaml"
    study.write_text(TINY_STUDY.replace("name: tiny", 'name: "a\\tb"'))
    result = invoke("run", str(study))
    assert result.exit_code == 2
    assert "printable" in error_line(result)
    result = invoke("run", str(study.with_name("x.yaml")), "--name", "x\x1b[2Jy")
    assert result.exit_code == 2


# -- 3, 4. passwords stay out of the database, the dashboard and every message --------------


def _dashboard_text(url: str) -> str:
    """Everything optuna-dashboard serves about the storage's studies, as one string."""
    from sweep.report.dashboard import Dashboard

    server = Dashboard(url, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/api/studies", timeout=60) as response:
            listing = response.read().decode()
        texts = [listing]
        for study in json.loads(listing)["study_summaries"]:
            with urllib.request.urlopen(
                f"{base}/api/studies/{study['study_id']}?after=0", timeout=60
            ) as response:
                texts.append(response.read().decode())
        return "\n".join(texts)
    finally:
        server.close()


def test_the_study_file_s_storage_password_is_not_stored(cli_env: Path) -> None:
    secret = f"TopSecret-{uuid.uuid4().hex[:8]}"
    study = cli_env / "study.yaml"
    study.write_text(TINY_STUDY + f"storage: postgresql+psycopg://user:{secret}@db.example/x\n")
    db = cli_env / "local.db"
    result = invoke("run", str(study), "--trials", "1", "--storage", f"sqlite:///{db}")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    stored = b"".join(p.read_bytes() for p in cli_env.glob("local.db*"))
    assert secret.encode() not in stored
    dashboard = _dashboard_text(f"sqlite:///{db}")
    assert "user:***@db.example" in dashboard and secret not in dashboard
    status = invoke("status", "--storage", f"sqlite:///{db}", "--json")
    assert secret not in status.stdout


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="SWEEP_TEST_POSTGRES_URL not set")
def test_no_password_in_postgresql_or_its_dashboard(cli_env: Path) -> None:
    """A real role with a real password: the sweep connects with it, and afterwards no table
    of the database and no page of the dashboard holds it."""
    assert POSTGRES_URL is not None
    role = f"sweep_pw_{uuid.uuid4().hex[:8]}"
    secret = f"Pw-{uuid.uuid4().hex}"
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'"))
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {role} OWNER {role}"))
    url = sqlalchemy.engine.make_url(POSTGRES_URL).set(
        username=role, password=secret, database=role
    )
    url_text = url.render_as_string(hide_password=False)
    try:
        study = cli_env / "study.yaml"
        study.write_text(TINY_STUDY + f"storage: {url_text}\n")
        result = invoke("run", str(study), "--trials", "1")
        assert result.exit_code == 0, result.output
        assert secret not in result.output
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            tables = connection.execute(
                sqlalchemy.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            dump = "".join(
                str(connection.execute(sqlalchemy.text(f'SELECT * FROM "{t}"')).fetchall())
                for t in list(tables)
            )
        engine.dispose()
        assert "tiny" in dump and secret not in dump
        dashboard = _dashboard_text(url_text)
        assert f"{role}:***@" in dashboard and secret not in dashboard
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)"))
            connection.execute(sqlalchemy.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("postgresql+psycopg://u:SECRETPW@host:notaport/db", 2),  # malformed
        ("postgresql+psycopg://u:SEC@RETPW@127.0.0.1:1/db", 2),  # '@' in the password, unescaped
        ("postgresql+psycopg://u:SECRETPW@127.0.0.1:1/db", 3),  # unreachable
        ("postgresql+psycopg2://u:SECRETPW@127.0.0.1:1/db", 2),  # driver not installed
        ("postgresql+psycopg://127.0.0.1:1/db?password=SECRETPW", 3),  # password as a parameter
        ("redis://u:SECRETPW@localhost/0", 2),  # unsupported
    ],
)
@pytest.mark.parametrize("command", ["run", "status", "studies", "report", "dashboard"])
def test_no_message_shows_a_password(cli_env: Path, url: str, code: int, command: str) -> None:
    args = {
        "run": ["run", "--db-wait", "0"],
        "status": ["status"],
        "studies": ["studies"],
        "report": ["report", "-o", "r.html"],
        "dashboard": ["dashboard", "--port", "0"],
    }[command]
    result = invoke(*args, "--storage", url)
    assert result.exit_code in (code, 2), result.output  # read-only commands: no such database
    assert "SECRET" not in result.output and "RETPW" not in result.output
    assert "Traceback" not in result.output
    error_line(result)


def test_redact_hides_every_password() -> None:
    cases = {
        "postgresql://u:pw@h/db": "postgresql://u:***@h/db",
        "postgresql://u:p@w@h:5/db": "postgresql://u:***@h:5/db",
        "postgresql://u:p/w@h/db": "postgresql://u:***@h/db",
        "see 'mysql+pymysql://root:pw@h/x' now": "see 'mysql+pymysql://root:***@h/x' now",
        "postgresql://h/db?ssl=1&password=pw": "postgresql://h/db?ssl=1&password=***",
        "host=h password=pw dbname=d": "host=h password=*** dbname=d",
        "sqlite:///a@b.db": "sqlite:///a@b.db",
        "postgresql://u@h/db": "postgresql://u@h/db",
    }
    for text, expected in cases.items():
        assert redact(text) == expected


# -- 5. a YAML bomb is refused at once --------------------------------------------------------

_LAUGHS = """\
l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]
l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]
l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]
l4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]
l5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]
l6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]
l7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]
l8: &l8 [*l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7]
l9: &l9 [*l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8]
"""


def _merge_bomb() -> str:
    lines = ["m0: &m0 {k0: 1, k1: 2}"]
    for i in range(1, 16):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}], a: *m{i - 1}, b: *m{i - 1}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "placement",
    [
        "top",  # an unknown key holding the bomb
        "values",  # as a parameter's values
        "enqueue",  # as the enqueued trials
        "name",  # where a string is expected
        "merge",  # merge keys instead of sequences
        "document",  # a document that is nothing but the bomb
    ],
)
def test_a_yaml_bomb_is_refused_at_once(cli_env: Path, placement: str) -> None:
    text = TINY_STUDY
    if placement == "top":
        text = _LAUGHS + text + "bomb: *l9\n"
    elif placement == "values":
        text = _LAUGHS + text.replace("batch_size: {values: [16, 32]}", "batch_size: {values: *l9}")
    elif placement == "enqueue":
        text = _LAUGHS + text + "enqueue: *l9\n"
    elif placement == "name":
        text = _LAUGHS + text.replace("name: tiny", "name: *l9")
    elif placement == "merge":
        text = _merge_bomb() + text + "extra: *m15\n"
    else:
        text = _LAUGHS.replace("l9: &l9", "l9: &l9") + "all: [*l9, *l9]\n"
    study = cli_env / "bomb.yaml"
    study.write_text(text)
    started = time.monotonic()
    result = invoke("run", str(study))
    # Unguarded, a 9-level bomb took minutes and gigabytes before its error; refused, it takes
    # milliseconds. (A generous bound: this is a guard against the blow-up, not a benchmark.)
    assert time.monotonic() - started < 30
    assert result.exit_code == 2
    line = error_line(result)
    assert "expand to more than" in line and str(study) in line
    assert not (cli_env / "sweep.db").exists()


def test_a_huge_study_file_is_refused(cli_env: Path) -> None:
    study = cli_env / "huge.yaml"
    study.write_text(TINY_STUDY + "# " + "x" * 2_000_000 + "\n")
    result = invoke("run", str(study))
    assert result.exit_code == 2 and "at most" in error_line(result)


# -- 6. text from the database is never Rich markup -------------------------------------------


@pytest.mark.parametrize("name", ["odd [/x] name", "[bold]b[/bold] [red]", "[link=file:///etc]x"])
def test_markup_in_names_and_errors_is_shown_as_it_is(cli_env: Path, name: str) -> None:
    url = f"sqlite:///{cli_env / 'm.db'}"
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("metric", "val_loss")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    error = "RuntimeError: [enforce fail at inline_container.cc:664] unexpected pos [/x]"
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params={"learning_rate": 1e-3},
            distributions=dist,
            user_attrs={"end_reason": "error", "error": error},
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 2e-3}, distributions=dist, value=0.5, user_attrs={}
        )
    )
    for args in (("status", name), ("studies",), ("best", name)):
        result = invoke(*args, "--storage", url)
        assert result.exit_code == 0, result.output
        if args[0] != "best":
            assert name in result.stdout
    status = invoke("status", name, "--storage", url).stdout
    assert "[enforce fail at inline_container.cc:664]" in status and "[/x]" in status
