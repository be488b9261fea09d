"""`sweep confirm`: re-run a study's best configurations with new seeds, and say which one wins
once the seed-to-seed noise is counted.

- `plan`: what to run, decided before anything is written (`plan_confirm`, `check_data`);
- `run`: the runs, each an ordinary trial of the sweep's objective in the study NAME.confirm;
- `verdict`: mean ± standard deviation per configuration and Welch's t-test (`summarize`).
"""

from sweep.confirm.plan import (
    Candidate,
    Plan,
    Run,
    check_data,
    check_options,
    config_key,
    metric_value,
    new_seeds,
    plan_confirm,
    select_top,
)
from sweep.confirm.run import Outcome, run_confirm
from sweep.confirm.verdict import ALPHA, summarize, welch_p

__all__ = [
    "ALPHA",
    "Candidate",
    "Outcome",
    "Plan",
    "Run",
    "check_data",
    "check_options",
    "config_key",
    "metric_value",
    "new_seeds",
    "plan_confirm",
    "run_confirm",
    "select_top",
    "summarize",
    "welch_p",
]
