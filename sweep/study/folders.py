"""Folders a study owns on disk: every path built from a study's name goes through here.

A study name is free text from a user (`sst2 / lr sweep`, `../../x`, `/home/me/victim`): it is
never used as a path. `study_dirname` maps it to one safe folder name, a slug of the name plus a
short hash of the whole name (so two names that slug alike never share a folder), and `within`
checks that the resolved path stays inside its root (a symlink planted inside the artifacts
folder cannot lead out of it either).

sweep deletes folders it made (older kept models, checkpoints of finished trials) and nothing
else: every folder it creates for a trial holds a marker file, and `remove_owned` deletes a
folder only when the marker is there.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

from sweep.errors import ConfigError
from sweep.study.attrs import TrialKey

__all__ = [
    "OWNER_MARKER",
    "chain_key",
    "checkpoint_dir_of",
    "is_owned",
    "legacy_study_dir",
    "mark_owned",
    "model_dir",
    "remove_owned",
    "study_dir",
    "study_dirname",
    "trial_dir",
    "within",
]

OWNER_MARKER = ".sweep-owned"  # in every trial folder sweep creates: it may delete that folder
_SLUG_MAX = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def study_dirname(name: str) -> str:
    """A folder name for study `name`: `<slug>-<8 hex digits of sha256(name)>`.

    The slug keeps ASCII letters, digits, '.', '_' and '-' (anything else becomes '-') and never
    starts with a dot, so the folder is neither hidden nor `.`/`..`; the hash keeps two names
    apart whose slugs are equal ("a b" and "a/b").
    """
    slug = _UNSAFE.sub("-", name).strip("-.")[:_SLUG_MAX].rstrip("-.") or "study"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}"


def within(root: Path, *parts: str) -> Path:
    """`root / parts...`, resolved, refused (ConfigError) unless it is inside `root`."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise ConfigError(f"refusing to use {path}: it is outside {base}")
    return path


def study_dir(root: Path, study_name: str) -> Path:
    """The folder of study `study_name` under `root` (kept models, checkpoints)."""
    return within(root, study_dirname(study_name))


def trial_dir(root: Path, study_name: str, key: int) -> Path:
    """`<root>/<study folder>/trial-<key>`: a trial's kept model or checkpoint folder.

    `key` is the number of the first trial of a retry chain, so a retried trial finds what the
    trial it repeats left there.
    """
    return within(root, study_dirname(study_name), f"trial-{int(key)}")


def legacy_study_dir(root: Path, study_name: str) -> Path | None:
    """Where sweep before 0.2 kept a study's models (`<root>/<name>`), for reading only, or None
    when the name could never have been a single folder there."""
    if not study_name or study_name in (".", "..") or any(c in study_name for c in "/\\\0"):
        return None
    try:
        return within(root, study_name)
    except (ConfigError, OSError, ValueError):
        return None


def mark_owned(folder: Path) -> None:
    """Say in `folder` that sweep made it (and may delete it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_MARKER).touch()


def is_owned(folder: Path) -> bool:
    """Whether `folder` is a real folder (not a symlink) that sweep made."""
    return folder.is_dir() and not folder.is_symlink() and (folder / OWNER_MARKER).is_file()


def remove_owned(folder: Path) -> bool:
    """Delete `folder` if sweep made it; returns whether it was deleted. Anything else is left."""
    if not is_owned(folder):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def chain_key(trial: Any) -> int:
    """The number of the first trial of `trial`'s retry chain (its own number if it is no retry).

    A retry resumes the checkpoint of the trial it repeats and keeps its best model in the same
    folder: a best epoch reached before the interruption is not lost with the failed original.
    """
    return int(trial.user_attrs.get(TrialKey.CHECKPOINT_OF, trial.number))


def model_dir(artifacts_dir: Path, study_name: str, key: int) -> Path:
    """Where the best model of retry chain `key` (see `chain_key`) is kept."""
    return trial_dir(artifacts_dir, study_name, key)


def checkpoint_dir_of(root: Path, study_name: str, key: int) -> Path:
    """Where the trials of retry chain `key` keep their checkpoint."""
    return trial_dir(root, study_name, key)
