"""What a worker does before its first trial: check its options, load its config and data, create
or join the study, and build its Session. `sweep run` and `sweep worker` are thin over this.

`WorkerOptions` holds the options every worker of a study runs with, once: `sweep run --workers N`
passes them on to its worker processes with `command_line`, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from sweep import __version__
from sweep.config import StudyConfig, bundled_demo_path, check_study_name, load_study
from sweep.errors import ConfigError
from sweep.runner.heartbeat import DEFAULT_INTERVAL_S
from sweep.runner.objective import Objective, OnTrialEpoch, OnTrialStart
from sweep.runner.session import Session
from sweep.storage import (
    DEFAULT_GIVE_UP_AFTER_S,
    close_storage,
    open_storage,
    open_study,
    redact,
)
from sweep.study import StudyKey

__all__ = [
    "WorkerOptions",
    "config_from_storage",
    "load_config",
    "open_run_study",
    "prepare_data",
    "study_attrs",
]


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs the trials of a study (the options of `sweep run` and `sweep worker`)."""

    n_trials: int
    artifacts_dir: Path
    checkpoint_dir: Path
    cache_dir: Path
    timeout: float | None = None
    heartbeat: float = float(DEFAULT_INTERVAL_S)
    db_wait: float = DEFAULT_GIVE_UP_AFTER_S

    def command_line(self, study: str, name: str) -> list[str]:
        """The arguments of a `sweep worker` process that runs with these options."""
        args = [
            study,
            "--name",
            name,
            "--trials",
            str(self.n_trials),
            "--artifacts-dir",
            str(self.artifacts_dir),
            "--checkpoint-dir",
            str(self.checkpoint_dir),
            "--heartbeat",
            str(self.heartbeat),
            "--db-wait",
            str(self.db_wait),
        ]
        return args + (["--timeout", str(self.timeout)] if self.timeout is not None else [])

    def session(
        self,
        config: StudyConfig,
        study: optuna.Study,
        *,
        on_start: OnTrialStart | None = None,
        on_epoch: OnTrialEpoch | None = None,
        on_trial_end: Any = None,
        stop: threading.Event | None = None,
    ) -> Session:
        """A Session on `study` with these options; `stop`: an event SIGTERM already sets."""
        objective = Objective(
            config,
            cache_dir=self.cache_dir,
            artifacts_dir=self.artifacts_dir,
            checkpoint_root=self.checkpoint_dir,
            on_start=on_start,
            on_epoch=on_epoch,
        )
        if stop is not None:
            objective.preempt = stop
        return Session(
            study,
            objective,
            n_trials=self.n_trials,
            timeout=self.timeout,
            on_trial_end=on_trial_end,
            heartbeat_interval=self.heartbeat,
            give_up_after=self.db_wait,
        )


def check_options(
    trials: int | None, timeout: float | None, heartbeat: float, db_wait: float
) -> None:
    """ConfigError for a budget, timeout, heartbeat or database wait that makes no sense."""
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")
    if not heartbeat > 0:
        raise ConfigError(f"--heartbeat must be a positive number of seconds, got {heartbeat}")
    if not db_wait >= 0:
        raise ConfigError(f"--db-wait must be a number of seconds >= 0, got {db_wait}")


def load_config(study: Path | None, name: str | None) -> StudyConfig:
    """The study file (the bundled demo without one), renamed by `--name`."""
    config = load_study(study if study is not None else bundled_demo_path())
    if name is not None:
        try:
            check_study_name(name)
        except ValueError as e:
            raise ConfigError(f"--name {name!r}: {e}") from None
        config = config.model_copy(update={"name": name})
    return config


def config_from_storage(study: optuna.Study, url: str) -> StudyConfig:
    """The config stored on an existing study (for `sweep worker NAME`)."""
    stored = study.user_attrs.get(StudyKey.CONFIG)
    if stored is None:
        raise ConfigError(f"study {study.study_name!r} in {redact(url)} was not created by sweep")
    return StudyConfig.model_validate(stored)


def prepare_data(config: StudyConfig, cache_dir: Path) -> Any:
    """Load the study's data and tokenize it once per tokenizer (cached for the trials): all
    from-config sizes share the BPE trained on the data, each pretrained model brings its own.
    Returns the TextData; raises DataError/ModelError before anything is written."""
    from sweep.data import text_data
    from sweep.training import prepare_data as tokenized
    from sweep.training import tokenizer_key

    text = text_data(config.data)
    seen: set[str | None] = set()
    for model in config.models.values():
        if tokenizer_key(model) not in seen:
            seen.add(tokenizer_key(model))
            tokenized(config.data, model, cache_dir)
    return text


def study_attrs(config: StudyConfig, text: Any) -> dict[str, Any]:
    """What a new study records about itself (sweep.study.StudyKey)."""
    return {
        StudyKey.CONFIG: config.resolved(),
        StudyKey.METRIC: config.metric.name,
        StudyKey.DATA_HASH: text.content_hash,
        StudyKey.DATA_SOURCE: text.source,
        StudyKey.SWEEP_VERSION: __version__,
        StudyKey.LABEL_NAMES: list(text.label_names),
        StudyKey.DATA_DROPPED: text.dropped_empty,
    }


def open_run_study(
    config: StudyConfig, url: str, text: Any, *, one_of_many: bool = False
) -> tuple[Any, optuna.Study, bool]:
    """Create the study or join it; returns (storage, study, created). Race-free: many workers
    may call this at once (`one_of_many`: then each joining worker gets its own sampler seed)."""
    from sweep.search import describe_space_change, make_pruner, make_sampler, space_signature

    opened = open_storage(url)
    try:
        study, created = open_study(
            opened,
            config.name,
            direction=config.metric.directions,
            sampler=make_sampler(config),
            pruner=make_pruner(config),
            signature=space_signature(config),
            describe_change=describe_space_change,
            user_attrs=study_attrs(config, text),
            enqueue=config.enqueue,
            signature_attr=StudyKey.SIGNATURE,
        )
        if not created:
            seed = _joining_seed(config.seed, len(study.get_trials(deepcopy=False)), one_of_many)
            study.sampler = make_sampler(config.model_copy(update={"seed": seed}))
    except BaseException:
        close_storage(opened)
        raise
    return opened, study, created


def _joining_seed(seed: int, trials: int, one_of_many: bool) -> int:
    """The sampler seed of a session that continues a study.

    A seeded sampler would propose the first session's points again: offset the seed by the
    trials there are (still reproducible for a given history), and for one of many workers by
    its process id too, or workers started together would all agree. Mixed, not added: seed +
    trials + pid collides for two workers whose pids differ by as much as the trials they saw.
    """
    seed += trials
    if not one_of_many:
        return seed
    mixed = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
    return int.from_bytes(hashlib.blake2b(mixed, digest_size=4).digest(), "big")
