"""Study storages: open one from a URL, ride out its outages, cache what a worker reads, claim
trials within the budget. The only package that touches Optuna's internals (all of them in
`_optuna_compat`, with the Optuna versions they were tested on).

- `_urls`: which URL a command uses, whether it is well-formed, the folders that go with it;
- `_open`: the RDB storage with engine settings per database, and creating/continuing a study;
- `_retry`: every call retried while the database cannot be reached (`ResilientStorage`);
- `_worker`: a worker's reads answered from what it already knows (`WorkerStorage`);
- `_claims`: the exact study-wide budget, one claim transaction at a time (`claim_trial`).
"""

from sweep.errors import redact
from sweep.storage._claims import Claim, budget_lock, claim_trial, in_process_lock
from sweep.storage._open import (
    check_storage,
    close_storage,
    open_storage,
    open_study,
    study_names,
)
from sweep.storage._optuna_compat import (
    SUPPORTED_OPTUNA,
    drop_sampler_view,
    frozen_study_id,
    rdb_below,
    stale_trial_ids,
    storage_of,
    study_id_of,
    study_trials,
    trial_id_of,
)
from sweep.storage._retry import (
    DEFAULT_GIVE_UP_AFTER_S,
    DelegatingStorage,
    ResilientStorage,
    Retrying,
    is_transient,
)
from sweep.storage._urls import (
    ARTIFACTS_DIRNAME,
    CHECKPOINTS_DIRNAME,
    DEFAULT_STORAGE,
    STORAGE_ENV,
    default_artifacts_dir,
    default_checkpoint_dir,
    parse_storage_url,
    resolve_storage_url,
    sqlite_path,
    storage_exists,
)
from sweep.storage._worker import FINISHED, WorkerStorage

__all__ = [
    "ARTIFACTS_DIRNAME",
    "CHECKPOINTS_DIRNAME",
    "DEFAULT_GIVE_UP_AFTER_S",
    "DEFAULT_STORAGE",
    "FINISHED",
    "STORAGE_ENV",
    "SUPPORTED_OPTUNA",
    "Claim",
    "DelegatingStorage",
    "ResilientStorage",
    "Retrying",
    "WorkerStorage",
    "budget_lock",
    "check_storage",
    "claim_trial",
    "close_storage",
    "default_artifacts_dir",
    "default_checkpoint_dir",
    "drop_sampler_view",
    "frozen_study_id",
    "in_process_lock",
    "is_transient",
    "open_storage",
    "open_study",
    "parse_storage_url",
    "rdb_below",
    "redact",
    "resolve_storage_url",
    "sqlite_path",
    "stale_trial_ids",
    "storage_exists",
    "storage_of",
    "study_id_of",
    "study_names",
    "study_trials",
    "trial_id_of",
]
