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
from sweep.confirm import (
    ATTR_CONFIRM_OF,
    ATTR_KEY,
    ATTR_SOURCE_TRIAL,
    Candidate,
    Plan,
    Run,
    metric_value,
)
from sweep.heartbeat import DEFAULT_INTERVAL_S, Heartbeat
from sweep.objective import InterruptGate, Objective, TrialFailed, TrialPreempted, worker_id
from sweep.status import (
    ATTR_CONFIG,
    ATTR_DATA_HASH,
    ATTR_DATA_SOURCE,
    ATTR_LABEL_NAMES,
    ATTR_METRIC,
    ATTR_SIGNATURE,
    ATTR_SWEEP_VERSION,
)

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
            for key in (ATTR_CONFIG, ATTR_METRIC, ATTR_DATA_HASH, ATTR_DATA_SOURCE):
                if key in attrs:
                    companion.set_user_attr(key, attrs[key])
            companion.set_user_attr(ATTR_LABEL_NAMES, attrs.get(ATTR_LABEL_NAMES))
            companion.set_user_attr(ATTR_SWEEP_VERSION, __version__)
            companion.set_user_attr(
                ATTR_CONFIRM_OF,
                {
                    "study": plan.study.study_name,
                    ATTR_SIGNATURE: attrs.get(ATTR_SIGNATURE),
                    ATTR_DATA_HASH: attrs.get(ATTR_DATA_HASH),
                },
            )
            return companion
    return optuna.load_study(study_name=plan.companion, storage=storage, **kwargs)


def _fail_dead(storage: optuna.storages.RDBStorage, trial: FrozenTrial) -> None:
    """A run whose process died: FAIL it as lost; its seed is run again by this confirm."""
    try:
        storage.set_trial_user_attr(trial._trial_id, "end_reason", "worker-lost")
        storage.set_trial_user_attr(trial._trial_id, "retried", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
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
        # its worker says at once which process owns it (see _split_running).
        user_attrs={
            ATTR_KEY: candidate.key,
            ATTR_SOURCE_TRIAL: candidate.trial,
            "seed": seed,
            "worker": worker_id(),
        },
    )
    trial_id = companion._storage.create_new_trial(companion._study_id, template_trial=template)
    # The trial already holds every parameter: the objective's suggest_* calls return them.
    trial = optuna.Trial(companion, trial_id)
    value: Any = None
    state = TrialState.FAIL
    interrupted = False
    with Heartbeat(storage, trial_id, DEFAULT_INTERVAL_S):
        try:
            value = objective(trial)
            state = TrialState.COMPLETE
        except TrialFailed:
            pass  # nan-loss or an error inside the fine-tune: recorded, and the plan goes on
        except (KeyboardInterrupt, TrialPreempted):
            interrupted = True
        except BaseException:
            # A SweepError (every run would fail the same way) or our bug: never left RUNNING.
            companion.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    if interrupted:
        # (Ctrl-C is deferred from here on: the InterruptGate is closed outside the fine-tune.)
        trial.set_user_attr("end_reason", "interrupted")
        companion.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return None, True
    if state == TrialState.COMPLETE:
        frozen = companion.tell(trial, value)
    else:
        frozen = companion.tell(trial, state=state)
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
