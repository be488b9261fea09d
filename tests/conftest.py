"""Shared fixtures for the CLI, storage and objective tests.

Nothing here is autouse: a test asks for what it needs. `cli_env` gives a test its own working
directory, cache and storage environment, so no test writes into the repository or ~/.cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent  # the repository's root

# A study whose trial takes about a second on one CPU core: 300 synthetic rows, 32 tokens,
# a one-layer GPT-2 with 32-wide embeddings, 1 or 2 epochs.
TINY_STUDY = """\
name: tiny
data: {demo: true, demo_size: 300, max_length: 32}
models:
  t1: {n_layer: 1, n_embd: 32, n_head: 2}
parameters:
  learning_rate: {min: 1.0e-3, max: 1.0e-2, log: true}
  batch_size: {values: [16, 32]}
  epochs: {min: 1, max: 2}
  model_size: t1
metric: {name: val_loss, goal: minimize}
sampler: tpe
pruner: none
trials: 3
seed: 0
"""


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/data cache for the whole test session (tokenizing once is the point)."""
    return tmp_path_factory.mktemp("sweep-cache")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> Path:
    """A clean working directory for `sweep` commands: cwd = tmp_path, cache in tmp, no
    SWEEP_STORAGE from the outside. Returns tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(shared_cache))
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    # Rich would otherwise size tables to an 80-column pseudo-terminal and wrap our lines.
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def tiny_study(cli_env: Path) -> Path:
    """The tiny study file in the test's working directory."""
    path = cli_env / "tiny.yaml"
    path.write_text(TINY_STUDY)
    return path


def _digest(path: Path) -> str | None:
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def digest():
    """sha256 of a file's bytes, None if it does not exist (for "storage unchanged" checks)."""
    return _digest


def invoke(*args: str, env: dict[str, str] | None = None):
    """Run `sweep ARGS` in-process; stdout and stderr stay apart."""
    from sweep.cli import app

    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def error_line(result, *, after_warnings: bool = False) -> str:
    """The one line a user error prints on stderr (`after_warnings`: the one `error:` line
    after warnings logged while the command tried, such as a database being retried)."""
    lines = result.stderr.strip().splitlines()
    if after_warnings:
        lines = [line for line in lines if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
