"""The search: the space of a study's parameters, its sampler and its pruner.

- `space`: parameters as Optuna distributions, `suggest_params` (the only caller of
  `trial.suggest_*`), the space's signature and what changed between two;
- `samplers`: `make_sampler`, with the no-repeat wrapper for finite spaces (`_distinct`);
- `pruners`: `make_pruner`, and Hyperband's reduction factor for short epoch ladders.
"""

from sweep.search.pruners import hyperband_reduction_factor, make_pruner
from sweep.search.samplers import make_sampler
from sweep.search.space import (
    describe_space_change,
    distributions,
    finite_space,
    grid_space,
    space_signature,
    suggest_params,
)

__all__ = [
    "describe_space_change",
    "distributions",
    "finite_space",
    "grid_space",
    "hyperband_reduction_factor",
    "make_pruner",
    "make_sampler",
    "space_signature",
    "suggest_params",
]
