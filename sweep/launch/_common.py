"""What the Slurm and Kubernetes launchers share: the study argument, names, the storage URL."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import ConfigError

_STUDY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class StudyTarget:
    """What the workers are told to run: a study file, or a study already in the storage."""

    argument: str  # passed verbatim to `sweep worker`
    name: str  # the study's name (for job names and messages)
    storage: str | None  # the study file's `storage:` key, if any


def looks_like_file(study: str) -> bool:
    """A STUDY argument names a file when it has a YAML suffix or a directory part; anything else
    is the name of a study that exists in the storage (the same rule as `sweep worker`)."""
    return study.endswith(_STUDY_SUFFIXES) or "/" in study or Path(study).is_file()


def resolve_study(study: str, *, absolute: bool) -> StudyTarget:
    """Validate a STUDY argument here, before any job is written or submitted.

    A study file is loaded (a mistake in it is a ConfigError now rather than in every worker's
    log); with `absolute` its path is made absolute, since a batch job may start in another
    directory. A study name is passed through: the workers read its config from the storage.
    """
    if not study.strip():
        raise ConfigError("STUDY must be a study file or a study name, got an empty string")
    if not looks_like_file(study):
        if "\n" in study:
            raise ConfigError(f"study name must be a single line, got {study!r}")
        return StudyTarget(argument=study, name=study, storage=None)
    from sweep.config import load_study

    config = load_study(Path(study))
    # abspath, not resolve: keep the path the user gave (symlinks and all), only anchored.
    argument = os.path.abspath(study) if absolute else study
    return StudyTarget(argument=argument, name=config.name, storage=config.storage)


def slug(text: str, *, max_len: int) -> str:
    """`text` as a lowercase DNS label (a-z, 0-9, '-'), at most `max_len` characters.

    Job and pod names must be DNS labels in Kubernetes; Slurm is laxer but the same name reads
    well in `squeue` and in log file names.
    """
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return label[:max_len].rstrip("-") or "study"


def require_at_least(option: str, value: int | None, minimum: int) -> None:
    """ConfigError unless `value` (if given) is at least `minimum`."""
    if value is not None and value < minimum:
        raise ConfigError(f"{option} must be at least {minimum}, got {value}")


def require_absolute(option: str, path: str) -> None:
    """ConfigError unless `path` is absolute (a path inside a container must not depend on the
    image's working directory)."""
    if not path.startswith("/"):
        raise ConfigError(f"{option} must be an absolute path inside the container, got {path!r}")
