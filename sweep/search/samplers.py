"""The study's sampler: TPE (multivariate, constant liar), random, CMA-ES, GP or grid, seeded.

In a space where every parameter takes finitely many values, TPE, GP and random sampling are
wrapped so that they never repeat a configuration while an untried one is left (`_distinct`).
"""

from __future__ import annotations

import importlib.util
import logging
import math

import optuna

from sweep.config import StudyConfig
from sweep.errors import ConfigError
from sweep.search._distinct import DistinctSampler
from sweep.search.space import distributions, finite_space, grid_space, where

__all__ = ["make_sampler"]

logger = logging.getLogger(__name__)


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with the study seed. In a space where every parameter takes
    finitely many values, TPE, GP and random sampling never repeat a configuration while an
    untried one is left (sweep.search._distinct)."""
    sampler = _base_sampler(config)
    space = finite_space(config) if config.sampler in ("tpe", "gp", "random") else None
    if not space:
        return sampler
    return DistinctSampler(sampler, distributions(config), space, seed=config.seed)


def _base_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    name, seed = config.sampler, config.seed
    if name == "tpe":
        # constant_liar keeps parallel workers from all sampling the same promising point.
        return optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # Optuna imports the `cmaes` package only at the first sample: fail here, before trials.
        if importlib.util.find_spec("cmaes") is None:
            raise ConfigError(
                f"{where(config, 'sampler')}: cmaes needs the 'cmaes' package (pip install cmaes)"
            )
        # CMA-ES handles only numeric ranges; batch_size / model_size choices are sampled by its
        # independent (random) sampler by design, so its per-trial warning would only be noise.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "grid":
        space = grid_space(config)
        size = math.prod(len(v) for v in space.values())
        if size > config.trials:
            logger.info(
                "grid has %d points but trials is %d: only part of it runs", size, config.trials
            )
        return optuna.samplers.GridSampler(space, seed=seed)
    raise ConfigError(f"{where(config, 'sampler')}: unknown sampler '{name}'")
