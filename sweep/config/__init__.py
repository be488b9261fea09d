"""The study file: one schema (frozen pydantic models), read from YAML with line and column.

A study file names a dataset (`DataConfig`), a ladder of model sizes (`ModelConfig`), a search
space (`ParamConfig` per parameter), the metric, sampler and pruner. `load_study` validates it
once, at load, into a `StudyConfig`; every other part of sweep reads that, and none repeats its
checks. Light on purpose: `sweep status` and `sweep report` load configs and must not pay for
torch or Optuna.
"""

from sweep.config._data import MIN_DEMO_SIZE, MIN_MAX_LENGTH, DataConfig, HFConfig
from sweep.config._fields import check_study_name
from sweep.config._metric import COST, METRIC_GOALS, SINGLE_OBJECTIVE_SAMPLERS, MetricConfig
from sweep.config._models import PRESETS, ModelConfig
from sweep.config._params import PARAM_KINDS, ParamConfig
from sweep.config._search import PRUNER_SETTINGS, SAMPLERS, PrunerConfig
from sweep.config._study import StudyConfig, bundled_demo_path, load_study

__all__ = [
    "COST",
    "METRIC_GOALS",
    "MIN_DEMO_SIZE",
    "MIN_MAX_LENGTH",
    "PARAM_KINDS",
    "PRESETS",
    "PRUNER_SETTINGS",
    "SAMPLERS",
    "SINGLE_OBJECTIVE_SAMPLERS",
    "DataConfig",
    "HFConfig",
    "MetricConfig",
    "ModelConfig",
    "ParamConfig",
    "PrunerConfig",
    "StudyConfig",
    "bundled_demo_path",
    "check_study_name",
    "load_study",
]
