"""`sweep confirm`: re-run the best configurations of a study with new seeds, and say which one
wins once the seed-to-seed noise is counted.

Where the runs go. Into a companion study, ``NAME.confirm``, in the same storage, never into
NAME: everything that reads NAME (its sampler, the `--trials` budget, `sweep best`, status,
reports, kept models) counts its COMPLETE trials, so a lucky seed would become the sweep's
best, TPE would learn from repeats, and the budget would shrink. The companion leaves NAME
exactly as it was, and its runs are ordinary trials that `sweep status NAME.confirm` and
`sweep report` show. Each run records the configuration it repeats (`confirm_key`, the
parameters as JSON; `confirm_source_trial`) and its `seed`, so running `confirm` again reuses
the finished runs and trains only what is missing (after Ctrl-C, or with a larger --seeds).

Which seeds. A configuration's original trial trained with seed s (the study's seed); its
confirmation runs use s+1, s+2, ... (skipping any seed it already has). The plan is a function of
the study and --seeds alone, so it is found again next time, and every configuration gets the
same new seeds: like is compared with like. Only the training seed changes (initialisation,
dropout, batch order); the data split is the study's, so what is measured is training noise.

Which one wins. Configurations are ranked by the mean of the metric over all their runs (the
original plus the new seeds). The best mean wins *clearly* when Welch's t-test (two-sided, no
equal-variance assumption) says its difference from every other configuration is unlikely to be
noise: p < 0.05. Otherwise the configurations with p >= 0.05 are *tied* with it. With 4 runs
each this test only sees large leads; that is the honest answer for 4 runs. The original run was
selected for being good, so it flatters its configuration a little (the winner's curse): the
per-seed values are in the JSON output for anyone who wants the new seeds alone.

The runs themselves are ordinary trials of sweep.runner.Objective (the same fine-tune, the
same recorded attributes), with a NopPruner (a confirmation run always trains all its epochs) and
no kept models. Ctrl-C fails the running one as `interrupted` (never left RUNNING); a process
killed outright leaves a RUNNING trial that the next `confirm` recognises as dead (its process
is gone, or its heartbeats stopped) and runs again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import ConfigError, DataError, StorageError
from sweep.runner import DEFAULT_INTERVAL_S, grace_period
from sweep.storage import stale_trial_ids, study_id_of, trial_id_of
from sweep.study import StudyKey, TrialKey, companion_name, counts_towards_budget

logger = logging.getLogger(__name__)

_SEEDS = 2**32  # StudyConfig.seed's range


def config_key(params: dict[str, Any]) -> str:
    """A configuration's identity: its parameters as sorted JSON."""
    return json.dumps(params, sort_keys=True, default=str)


def metric_value(trial: FrozenTrial) -> float | None:
    """The trial's metric (its first objective), None when missing or not finite."""
    if trial.state != TrialState.COMPLETE or not trial.values:
        return None
    value = trial.values[0]
    return float(value) if math.isfinite(value) else None


@dataclass
class Run:
    """One fine-tune of a configuration: the original trial, or a confirmation run."""

    seed: int
    value: float | None  # None: the run failed (nan-loss, error) or is not done
    source: str  # "original" | "reused" (done by an earlier confirm) | "new"
    trial: int  # its number, in the original study or in the companion
    state: str = "COMPLETE"


@dataclass
class Candidate:
    """A configuration among the top ones, with its runs."""

    rank: int  # by the original value: 1 is the sweep's best
    key: str
    trial: int  # the best original trial of this configuration
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    base_seed: int
    runs: list[Run] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # the confirmation seeds of this plan


@dataclass
class Plan:
    """What `confirm` will do, decided before anything is written."""

    study: optuna.Study
    config: Any  # StudyConfig
    metric: str
    minimize: bool
    top: int
    seeds: int
    candidates: list[Candidate]
    todo: list[tuple[Candidate, int]]  # (configuration, seed) still to run
    reused: int
    companion: str
    companion_exists: bool
    dead: list[FrozenTrial]  # RUNNING companion trials whose process is gone
    unfinished: int  # trials of the study still running or queued: the top may change


def select_top(
    trials: Sequence[FrozenTrial], *, minimize: bool, top: int, default_seed: int
) -> list[Candidate]:
    """The `top` best distinct configurations among the COMPLETE trials, best first.

    Trials with the same parameters are one configuration (an enqueued point sampled again, a
    retry); its original runs are one per seed, the best-ranked trial of each seed.
    """
    sign = 1.0 if minimize else -1.0
    scored = [(value, t) for t in trials if (value := metric_value(t)) is not None]
    scored.sort(key=lambda pair: (sign * pair[0], pair[1].number))
    chosen: dict[str, Candidate] = {}
    for value, trial in scored:
        key = config_key(trial.params)
        seed = int(trial.user_attrs.get(TrialKey.SEED, default_seed))
        candidate = chosen.get(key)
        if candidate is None:
            if len(chosen) == top:
                continue  # full; later trials may still add seeds of the chosen ones
            candidate = chosen[key] = Candidate(
                rank=len(chosen) + 1,
                key=key,
                trial=trial.number,
                params=dict(trial.params),
                distributions=dict(trial.distributions),
                base_seed=seed,
            )
        if all(run.seed != seed for run in candidate.runs):
            candidate.runs.append(Run(seed, value, "original", trial.number))
    return list(chosen.values())


def new_seeds(candidate: Candidate, count: int) -> list[int]:
    """`count` seeds after the configuration's own, skipping those its original runs used."""
    used = {run.seed for run in candidate.runs if run.source == "original"}
    seeds: list[int] = []
    step = 1
    while len(seeds) < count:
        seed = (candidate.base_seed + step) % _SEEDS
        if seed not in used:
            seeds.append(seed)
        step += 1
    return seeds


def _process_alive(worker: str | None, started: Any) -> bool | None:
    """Whether the `host:pid` that started a run still runs it; None if it is on another host."""
    import psutil

    host, _, pid_text = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return False
    # A pid that was reused by a newer process is not the run's process.
    return started is None or created <= started.timestamp() + 1.0


def _split_running(
    rdb: optuna.storages.RDBStorage, companion: optuna.Study
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """The companion's RUNNING trials as (live, dead).

    On this host the process is asked directly; a run on another host is dead when its
    heartbeats stopped for the grace period (sweep.runner.heartbeat's rule).
    """
    running = companion.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return [], []
    rdb.heartbeat_interval = DEFAULT_INTERVAL_S
    stale = set(stale_trial_ids(rdb, study_id_of(companion), grace_period(DEFAULT_INTERVAL_S)))
    live, dead = [], []
    for trial in running:
        alive = _process_alive(trial.user_attrs.get(TrialKey.WORKER), trial.datetime_start)
        if alive is None:
            alive = trial_id_of(trial) not in stale
        (live if alive else dead).append(trial)
    return live, dead


def _load_config(study: optuna.Study) -> Any:
    from pydantic import ValidationError

    from sweep.config import StudyConfig

    resolved = study.user_attrs.get(StudyKey.CONFIG)
    if resolved is None:
        raise StorageError(f"study {study.study_name!r} was not created by sweep: no stored config")
    try:
        return StudyConfig.model_validate(resolved)
    except ValidationError as e:
        raise StorageError(
            f"study {study.study_name!r}: stored config no longer valid ({e.errors()[0]['msg']})"
        ) from None


def check_options(top: int, seeds: int) -> None:
    """ConfigError unless --top and --seeds are at least 1."""
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")


def plan_confirm(
    storage: optuna.storages.RDBStorage, study: optuna.Study, *, top: int, seeds: int
) -> Plan:
    """Decide what to run, reading only; every mistake raises a SweepError before any write."""
    check_options(top, seeds)
    name = study.study_name
    linked = study.user_attrs.get(StudyKey.CONFIRM_OF)
    if isinstance(linked, dict) and linked.get("study"):
        raise ConfigError(
            f"study {name!r} holds the confirmation runs of {linked['study']!r}; "
            f"run sweep confirm {linked['study']}"
        )
    config = _load_config(study)
    minimize = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    trials = study.get_trials(deepcopy=False)
    candidates = select_top(trials, minimize=minimize, top=top, default_seed=config.seed)
    if not candidates:
        raise StorageError(f"study {name!r} has no complete trial to confirm")

    companion = companion_name(name)
    exists = any(s.study_name == companion for s in storage.get_all_studies())
    done, dead = _done_runs(storage, study, companion) if exists else ({}, [])

    todo: list[tuple[Candidate, int]] = []
    reused = 0
    for candidate in candidates:
        candidate.seeds = new_seeds(candidate, seeds)
        for seed in candidate.seeds:
            found = done.get((candidate.key, seed))
            if found is None:
                todo.append((candidate, seed))
                continue
            reused += 1
            candidate.runs.append(
                Run(seed, metric_value(found), "reused", found.number, found.state.name)
            )
    return Plan(
        study=study,
        config=config,
        metric=str(study.user_attrs.get(StudyKey.METRIC) or config.metric.name),
        minimize=minimize,
        top=top,
        seeds=seeds,
        candidates=candidates,
        todo=todo,
        reused=reused,
        companion=companion,
        companion_exists=exists,
        dead=dead,
        unfinished=sum(1 for t in trials if not t.state.is_finished()),
    )


def _done_runs(
    storage: optuna.storages.RDBStorage, study: optuna.Study, companion: str
) -> tuple[dict[tuple[str, int], FrozenTrial], list[FrozenTrial]]:
    """The companion's finished runs by (configuration, seed), and its runs whose process died;
    ConfigError while another confirm is running."""
    other = optuna.load_study(study_name=companion, storage=storage)
    _check_companion(study, other)
    live, dead = _split_running(storage, other)
    if live:
        trial = live[0]
        raise ConfigError(
            f"another sweep confirm is running on {study.study_name!r} (trial {trial.number} of "
            f"{companion}, worker {trial.user_attrs.get(TrialKey.WORKER, 'unknown')}); "
            "wait for it to finish"
        )
    done: dict[tuple[str, int], FrozenTrial] = {}
    for trial in other.get_trials(deepcopy=False):
        key, seed = trial.user_attrs.get(TrialKey.CONFIRM_KEY), trial.user_attrs.get(TrialKey.SEED)
        # Done: complete, or failed because of the configuration (nan-loss, an error), which
        # would fail again. Interrupted, lost and preempted runs are run again.
        if key is not None and seed is not None and counts_towards_budget(trial):
            done.setdefault((key, int(seed)), trial)
    return done, dead


def _check_companion(study: optuna.Study, companion: optuna.Study) -> None:
    """The companion must hold runs of this very study: same space, same data."""
    linked = companion.user_attrs.get(StudyKey.CONFIRM_OF)
    hint = (
        f"remove it (optuna delete-study --study-name {companion.study_name} --storage URL) "
        "or rename the study"
    )
    if not isinstance(linked, dict) or linked.get("study") != study.study_name:
        raise StorageError(
            f"study {companion.study_name!r} exists but does not hold sweep confirm runs of "
            f"{study.study_name!r}; {hint}"
        )
    for attr, what in ((StudyKey.SIGNATURE, "search space"), (StudyKey.DATA_HASH, "data")):
        if linked.get(attr) != study.user_attrs.get(attr):
            raise StorageError(
                f"{companion.study_name!r} holds confirmation runs of an earlier "
                f"{study.study_name!r} with another {what}; {hint}"
            )


def check_data(plan: Plan, cache_dir: Path) -> None:
    """Load and tokenize the data the runs need; DataError if it changed since the sweep."""
    from sweep.data import text_data
    from sweep.search import suggest_params
    from sweep.training import model_for, prepare_data, tokenizer_key

    recorded = plan.study.user_attrs.get(StudyKey.DATA_HASH)
    current = text_data(plan.config.data).content_hash
    if recorded is not None and recorded != current:
        raise DataError(
            f"the data of study {plan.study.study_name!r} changed since the sweep "
            f"({plan.study.user_attrs.get(StudyKey.DATA_SOURCE)}: hash {current[:12]} != "
            f"{recorded[:12]}); new seeds would not be comparable with the original runs"
        )
    seen: set[Any] = set()
    for candidate, _ in plan.todo:
        # FixedTrial replays the parameters through the sweep's own suggest_params, which also
        # fills in fixed ones (a single model_size is not a searched parameter).
        size = suggest_params(optuna.trial.FixedTrial(candidate.params), plan.config).model_size
        model = model_for(size, plan.config.models)
        if tokenizer_key(model) not in seen:
            seen.add(tokenizer_key(model))
            prepare_data(plan.config.data, model, cache_dir)
