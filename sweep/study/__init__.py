"""What sweep stores on studies and trials, and what it reads back from them.

- `attrs`: every stored key (`StudyKey`, `TrialKey`) and why a trial ended (`EndReason`);
- `accounting`: which trials count towards the budget, what a trial cost, the sweep overhead;
- `queries`: a study as plain rows (`study_status`, `trial_row`, `best_trial`, ...);
- `text`: those rows as plain text; `pareto`: the Pareto front of a metric-and-cost study;
- `folders`: the folders a study owns on disk (never its name as a path).

Needs only Optuna: `sweep status` and `sweep report` never import torch.
"""

from sweep.study.accounting import (
    NOT_COUNTED_REASONS,
    RETRIED_REASONS,
    cost_of,
    counts_towards_budget,
    finite,
    overhead,
    trial_cost,
)
from sweep.study.attrs import (
    CONFIRM_SUFFIX,
    SESSION_PREFIX,
    EndReason,
    StudyKey,
    SystemKey,
    TrialKey,
)
from sweep.study.folders import (
    OWNER_MARKER,
    chain_key,
    checkpoint_dir_of,
    is_owned,
    legacy_study_dir,
    mark_owned,
    model_dir,
    remove_owned,
    study_dir,
    study_dirname,
    trial_dir,
    within,
)
from sweep.study.pareto import direction_name, pareto_flags, pareto_front_trials
from sweep.study.queries import (
    best_trial,
    companion_name,
    end_reason_text,
    is_companion,
    is_multi_objective,
    metric_of,
    objective_names,
    studies_rows,
    study_status,
    trial_row,
)

__all__ = [
    "CONFIRM_SUFFIX",
    "NOT_COUNTED_REASONS",
    "OWNER_MARKER",
    "RETRIED_REASONS",
    "SESSION_PREFIX",
    "EndReason",
    "StudyKey",
    "SystemKey",
    "TrialKey",
    "best_trial",
    "chain_key",
    "checkpoint_dir_of",
    "companion_name",
    "cost_of",
    "counts_towards_budget",
    "direction_name",
    "end_reason_text",
    "finite",
    "is_companion",
    "is_multi_objective",
    "is_owned",
    "legacy_study_dir",
    "mark_owned",
    "metric_of",
    "model_dir",
    "objective_names",
    "overhead",
    "pareto_flags",
    "pareto_front_trials",
    "remove_owned",
    "studies_rows",
    "study_dir",
    "study_dirname",
    "study_status",
    "trial_cost",
    "trial_dir",
    "trial_row",
    "within",
]
