"""Running the plan of `sweep confirm` (sweep.confirm): each run a fine-tune of the sweep's own
objective with another seed, stored in the companion study NAME.confirm."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep import __version__
from sweep.confirm.plan import (
    Candidate,
    Plan,
    Run,
    metric_value,
)
from sweep.runner import (
    DEFAULT_INTERVAL_S,
    Heartbeat,
    InterruptGate,
    Objective,
    record_infrastructure,
    run_and_tell,
    tell_study,
    worker_id,
)
from sweep.storage import storage_of, study_id_of, trial_id_of
from sweep.study import EndReason, StudyKey, TrialKey

logger = logging.getLogger("sweep.confirm")


@dataclass
class Outcome:
    """What `run_confirm` did."""

    ran: int = 0  # runs that finished here (complete or failed)
    interrupted: bool = False  # Ctrl-C: the rest of the plan was not run


# (index from 1, total, configuration, seed): a run starts; then the same with the finished run.
OnRunStart = Callable[[int, int, Candidate, int], None]
OnRunEnd = Callable[[int, int, Candidate, Run], None]


def _open_companion(storage: optuna.storages.RDBStorage, plan: Plan) -> optuna.Study:
    """Create the companion study (or load it): same directions, no pruning, links to NAME."""
    # A random sampler: every parameter of a run is given, nothing is ever sampled.
    kwargs: dict[str, Any] = {
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "pruner": optuna.pruners.NopPruner(),  # a confirmation run trains all its epochs
    }
    if not plan.companion_exists:
        try:
            companion = optuna.create_study(
                storage=storage,
                study_name=plan.companion,
                directions=plan.study.directions,
                **kwargs,
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another confirm created it a moment ago
        else:
            attrs = plan.study.user_attrs
            # The config, metric and data attrs make `sweep status/report` read it like any
            # study; the space signature is left out on purpose: `sweep run --name NAME.confirm`
            # then refuses to add sampled trials to it.
            for key in (StudyKey.CONFIG, StudyKey.METRIC, StudyKey.DATA_HASH, StudyKey.DATA_SOURCE):
                if key in attrs:
                    companion.set_user_attr(key, attrs[key])
            companion.set_user_attr(StudyKey.LABEL_NAMES, attrs.get(StudyKey.LABEL_NAMES))
            companion.set_user_attr(StudyKey.SWEEP_VERSION, __version__)
            companion.set_user_attr(
                StudyKey.CONFIRM_OF,
                {
                    "study": plan.study.study_name,
                    StudyKey.SIGNATURE: attrs.get(StudyKey.SIGNATURE),
                    StudyKey.DATA_HASH: attrs.get(StudyKey.DATA_HASH),
                },
            )
            return companion
    return optuna.load_study(study_name=plan.companion, storage=storage, **kwargs)


def _fail_dead(storage: optuna.storages.RDBStorage, trial: FrozenTrial) -> None:
    """A run whose process died: FAIL it as lost; its seed is run again by this confirm."""
    try:
        storage.set_trial_user_attr(trial_id_of(trial), TrialKey.END_REASON, EndReason.WORKER_LOST)
        storage.set_trial_user_attr(trial_id_of(trial), TrialKey.RETRIED, True)
        storage.set_trial_state_values(trial_id_of(trial), TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # it finished after all (it was slow, not dead)
    else:
        logger.warning("confirmation run %d was left running by a dead process", trial.number)


def _run_one(
    companion: optuna.Study,
    storage: optuna.storages.RDBStorage,
    objective: Objective,
    candidate: Candidate,
    seed: int,
) -> tuple[Run | None, bool]:
    """One confirmation run; returns (the run, or None if interrupted; interrupted)."""
    template = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params=candidate.params,
        distributions=candidate.distributions,
        # Written with the trial, in one transaction: a run is never without its identity, and
        # its worker says at once which process owns it (see plan._split_running).
        user_attrs={
            TrialKey.CONFIRM_KEY: candidate.key,
            TrialKey.CONFIRM_SOURCE_TRIAL: candidate.trial,
            TrialKey.SEED: seed,
            TrialKey.WORKER: worker_id(),
        },
    )
    trial_id = storage_of(companion).create_new_trial(
        study_id_of(companion), template_trial=template
    )
    # The trial already holds every parameter: the objective's suggest_* calls return them.
    trial = optuna.Trial(companion, trial_id)
    try:
        told = run_and_tell(
            trial,
            objective,
            Heartbeat(storage, trial_id, DEFAULT_INTERVAL_S),
            tell=tell_study(companion),
            # The run is not counted as done: the next `sweep confirm` runs its seed again.
            on_infrastructure=lambda t, error: record_infrastructure(companion, t, error),
        )
    except KeyboardInterrupt:
        return None, True  # recorded as interrupted; Ctrl-C is deferred from here on
    if told.preempted or told.trial is None:
        return None, True  # SIGTERM: stopped here, this seed is run again next time
    frozen = told.trial
    return Run(seed, metric_value(frozen), "new", frozen.number, frozen.state.name), False


def run_confirm(
    storage: optuna.storages.RDBStorage,
    plan: Plan,
    *,
    cache_dir: Path,
    artifacts_dir: Path,
    checkpoint_root: Path,
    on_run_start: OnRunStart | None = None,
    on_run_end: OnRunEnd | None = None,
) -> Outcome:
    """Run `plan.todo` into the companion study; adds each finished run to its configuration.

    Ctrl-C fails the running run as `interrupted` and returns (`Outcome.interrupted`); a
    SweepError from a run propagates after failing it.
    """
    outcome = Outcome()
    if not plan.todo and not plan.dead:
        return outcome  # nothing to write: the companion is not even created
    gate = InterruptGate()
    objectives: dict[int, Objective] = {}
    # From the first write on: Ctrl-C while the companion is being created is deferred too.
    gate.install()
    try:
        companion = _open_companion(storage, plan)
        for trial in plan.dead:
            _fail_dead(storage, trial)
        for index, (candidate, seed) in enumerate(plan.todo, 1):
            if gate.pending:
                break
            if seed not in objectives:
                # The sweep's own objective with the seed changed; no kept models: a
                # confirmation run is a measurement, `sweep best --export` exports the sweep's.
                config = plan.config.model_copy(update={"seed": seed, "keep_best": 0})
                objectives[seed] = Objective(
                    config,
                    cache_dir=cache_dir,
                    artifacts_dir=artifacts_dir,
                    checkpoint_root=checkpoint_root,
                    gate=gate,
                )
            if on_run_start is not None:
                on_run_start(index, len(plan.todo), candidate, seed)
            run, interrupted = _run_one(companion, storage, objectives[seed], candidate, seed)
            if run is not None:
                candidate.runs.append(run)
                outcome.ran += 1
                if on_run_end is not None:
                    on_run_end(index, len(plan.todo), candidate, run)
            if interrupted:
                outcome.interrupted = True
                break
    finally:
        gate.uninstall()
        outcome.interrupted = outcome.interrupted or gate.pending
    return outcome
