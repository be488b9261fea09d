"""Where Optuna meets training: the objective, the one runner that records a trial's end, the
worker's claim loop with heartbeats and retries, and which kept models stay.

- `objective`: `Objective`, one Optuna trial -> one fine-tune, everything it cost recorded;
- `run_and_tell`: the objective's value or exception -> a state and a `tell`, inside a heartbeat;
- `session`: `Session`, a worker claiming trials within the budget until the study is done;
- `heartbeat`: heartbeats, and finding and retrying the trials of workers that died;
- `gate`: Ctrl-C only where it cannot break Optuna's bookkeeping; `kept_models`: keep_best.
"""

from sweep.runner.gate import InterruptGate
from sweep.runner.heartbeat import (
    DEFAULT_INTERVAL_S,
    DEFAULT_MAX_RETRIES,
    Heartbeat,
    grace_period,
    queue_retry,
    reap_lost_trials,
)
from sweep.runner.kept_models import prune_kept_models
from sweep.runner.objective import (
    Objective,
    OnTrialEpoch,
    OnTrialStart,
    TrialFailed,
    TrialPreempted,
    worker_id,
)
from sweep.runner.run_and_tell import Told, record_infrastructure, run_and_tell, tell_study
from sweep.runner.session import Session

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_MAX_RETRIES",
    "Heartbeat",
    "InterruptGate",
    "Objective",
    "OnTrialEpoch",
    "OnTrialStart",
    "Session",
    "Told",
    "TrialFailed",
    "TrialPreempted",
    "grace_period",
    "prune_kept_models",
    "queue_retry",
    "reap_lost_trials",
    "record_infrastructure",
    "run_and_tell",
    "tell_study",
    "worker_id",
]
