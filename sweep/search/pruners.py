"""The study's pruner: Hyperband (the default), successive halving, median, or none. The
resource is the epoch: trials report steps 1..epochs."""

from __future__ import annotations

import optuna

from sweep.config import StudyConfig
from sweep.errors import ConfigError
from sweep.search.space import where

__all__ = ["hyperband_reduction_factor", "make_pruner"]


def hyperband_reduction_factor(max_epochs: int) -> int:
    """Hyperband's default reduction factor for a ladder of `max_epochs` epochs: 3 (Optuna's and
    the paper's), or 2 where 3 would leave fewer than three brackets (fewer than 9 epochs).

    Hyperband hedges against a misleading first epoch by running brackets that prune later or
    never; with 4 epochs and a factor of 3 there are only two (rungs at 1 and 3 epochs, and no
    pruning). A factor of 2 gives three, with rungs at 1, 2 and 4 epochs. On the GPU table of
    benchmarks/search.py (SST-2, epochs 1..4, seeds 100..299) TPE + Hyperband reached random
    search's best on 89 of 200 seeds with a factor of 2 and on 77 with 3, spending the same
    compute to get there (a lower bound of 0.56 of random search's on both).
    """
    return 3 if max_epochs >= 9 else 2


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner. The resource is the epoch: trials report steps 1..epochs."""
    name, settings = config.pruner.name, dict(config.pruner.settings)
    try:
        if name == "hyperband":
            epochs = config.max_epochs()
            kwargs = {
                "min_resource": 1,
                "max_resource": epochs,
                "reduction_factor": hyperband_reduction_factor(epochs),
            }
            return optuna.pruners.HyperbandPruner(**(kwargs | settings))
        if name == "successive_halving":
            # The same factor as Hyperband's: over 4 epochs a factor of 3 keeps a third after the
            # first epoch and has no later rung before the last, where 2 keeps half, then a
            # quarter after the second. On the SST-2 table of benchmarks/search.py (seeds
            # 100..299) TPE with 2 reached random search's best on 107 of 200 seeds, with 3 on 64.
            rf = hyperband_reduction_factor(config.max_epochs())
            kwargs = {"min_resource": 1, "reduction_factor": rf}
            return optuna.pruners.SuccessiveHalvingPruner(**(kwargs | settings))
        if name == "median":
            # Judge a trial only from its second epoch on: one epoch of a fresh model is noisy.
            kwargs = {"n_startup_trials": 5, "n_warmup_steps": 2}
            return optuna.pruners.MedianPruner(**(kwargs | settings))
        if name == "none":
            return optuna.pruners.NopPruner()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where(config, 'pruner')}: {' '.join(str(exc).split())}") from None
    raise ConfigError(f"{where(config, 'pruner')}: unknown pruner '{name}'")
