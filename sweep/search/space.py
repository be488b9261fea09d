"""The search space of a study: its parameters as Optuna distributions, and its signature.

`suggest_params` is the only caller of `trial.suggest_*` in sweep: everything downstream receives
a plain `TrialParams`. `space_signature` is stored on a study so that continuing it with an edited
study file can say what changed (`describe_space_change`) instead of silently mixing two searches.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from sweep.config import PARAM_KINDS, ParamConfig, StudyConfig
from sweep.errors import ConfigError

if TYPE_CHECKING:
    from sweep.training import TrialParams

__all__ = [
    "describe_space_change",
    "distributions",
    "finite_space",
    "grid_space",
    "space_signature",
    "suggest_params",
    "where",
]

logger = logging.getLogger(__name__)

# Bumped when the signature's layout changes, so an old study is not compared field by field.
_SIGNATURE_VERSION = 1
# GridSampler materialises every combination; past this many the grid is a typo, not a plan.
_MAX_GRID = 1_000_000


def _distribution(name: str, param: ParamConfig) -> BaseDistribution:
    if param.values is not None:
        return CategoricalDistribution(param.values)
    if PARAM_KINDS[name] == "int":
        return IntDistribution(param.min, param.max, log=param.log, step=param.step or 1)
    return FloatDistribution(param.min, param.max, log=param.log, step=param.step)


def distributions(config: StudyConfig) -> dict[str, BaseDistribution]:
    """The searched parameters as Optuna distributions (fixed values are not searched)."""
    return {
        name: _distribution(name, config.parameters[name])
        for name in PARAM_KINDS
        if name in config.parameters and not config.parameters[name].fixed
    }


def suggest_params(trial: optuna.Trial, config: StudyConfig) -> TrialParams:
    """Ask `trial` for every searched parameter; fixed values and the study seed fill the rest."""
    from sweep.training import TrialParams  # lazy: the training package imports torch

    values: dict[str, Any] = {
        name: param.value for name, param in config.parameters.items() if param.fixed
    }
    for name, dist in distributions(config).items():
        if isinstance(dist, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[name] = trial.suggest_int(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        else:
            assert isinstance(dist, FloatDistribution)
            values[name] = trial.suggest_float(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
    # Every trial uses the study seed: trials then differ only by their parameters.
    return TrialParams(seed=config.seed, **values)


def _model_names(config: StudyConfig) -> list[str]:
    param = config.parameters["model_size"]
    return [param.value] if param.fixed else list(param.values)


def space_signature(config: StudyConfig) -> dict[str, Any]:
    """JSON-able identity of the search space: distributions, fixed values, and the model shapes
    that `model_size` can name (renaming nano to a bigger shape changes what a trial means)."""
    return {
        "version": _SIGNATURE_VERSION,
        "distributions": {
            name: json.loads(distribution_to_json(dist))
            for name, dist in distributions(config).items()
        },
        "fixed": {name: p.value for name, p in config.parameters.items() if p.fixed},
        "models": {
            name: config.models[name].model_dump(mode="json") for name in _model_names(config)
        },
    }


def _num(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _entry(signature: dict[str, Any], name: str) -> tuple[str, Any] | None:
    """("fixed", value) | ("dist", distribution) | None for parameter `name` of a signature."""
    if name in signature.get("fixed", {}):
        return "fixed", signature["fixed"][name]
    raw = signature.get("distributions", {}).get(name)
    if raw is None:
        return None
    try:
        return "dist", json_to_distribution(json.dumps(raw))
    except (ValueError, TypeError, KeyError):
        return "raw", raw  # an unreadable stored distribution is still compared as data


def _describe(entry: tuple[str, Any]) -> tuple[str, str]:
    """(kind word, text): ("range", "1e-05..0.001 (log)"), ("values", "[16, 32]"), ..."""
    kind, value = entry
    if kind == "fixed":
        return "fixed", _num(value)
    if isinstance(value, CategoricalDistribution):
        return "values", "[" + ", ".join(_num(c) for c in value.choices) + "]"
    if isinstance(value, FloatDistribution | IntDistribution):
        text = f"{_num(value.low)}..{_num(value.high)}"
        if value.log:
            text += " (log)"
        if value.step is not None and not (isinstance(value, IntDistribution) and value.step == 1):
            text += f" step {_num(value.step)}"
        return "range", text
    return "distribution", json.dumps(value, sort_keys=True)


def _param_change(name: str, old: tuple[str, Any] | None, new: tuple[str, Any] | None) -> str:
    if old is None:
        return f"{name}: added ({' '.join(_describe(new))})"
    if new is None:
        return f"{name}: removed (was {' '.join(_describe(old))})"
    if isinstance(old[1], CategoricalDistribution) and isinstance(new[1], CategoricalDistribution):
        added = [c for c in new[1].choices if c not in old[1].choices]
        removed = [c for c in old[1].choices if c not in new[1].choices]
        parts = [
            f"{verb} value{'s' if len(items) > 1 else ''} {', '.join(_num(c) for c in items)}"
            for verb, items in (("added", added), ("removed", removed))
            if items
        ]
        return f"{name}: {'; '.join(parts) if parts else 'values reordered'}"
    (old_kind, old_text), (new_kind, new_text) = _describe(old), _describe(new)
    if old_kind == new_kind:
        return f"{name}: {old_kind} {old_text} -> {new_text}"
    return f"{name}: {old_kind} {old_text} -> {new_kind} {new_text}"


def _model_text(model: Any) -> str:
    if isinstance(model, dict) and {"n_layer", "n_embd", "n_head"} <= model.keys():
        return f"{model['n_layer']}/{model['n_embd']}/{model['n_head']} (layers/embd/heads)"
    if isinstance(model, dict) and len(model) == 1:
        return " ".join(f"{k} {v}" for k, v in model.items())
    return json.dumps(model, sort_keys=True)


def describe_space_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """None when two space signatures are equal, else one line saying what changed, e.g.
    "learning_rate: range 1e-05..0.001 (log) -> 1e-05..0.01 (log); batch_size: added value 128"."""
    if old == new:
        return None
    if not isinstance(old, dict) or old.get("version") != new.get("version"):
        version = old.get("version") if isinstance(old, dict) else None
        return f"the space signature format changed (version {version} -> {new.get('version')})"
    names = [*PARAM_KINDS]
    for signature in (old, new):
        for part in ("fixed", "distributions"):
            names += [n for n in signature.get(part, {}) if n not in names]
    changes = []
    for name in names:
        before, after = _entry(old, name), _entry(new, name)
        if before != after:
            changes.append(_param_change(name, before, after))
    old_models, new_models = old.get("models", {}), new.get("models", {})
    for name in [*old_models, *(n for n in new_models if n not in old_models)]:
        before, after = old_models.get(name), new_models.get(name)
        if before == after:
            continue
        if before is None:
            changes.append(f"models.{name}: added ({_model_text(after)})")
        elif after is None:
            changes.append(f"models.{name}: removed (was {_model_text(before)})")
        else:
            changes.append(f"models.{name}: {_model_text(before)} -> {_model_text(after)}")
    return "; ".join(changes) or "the search space changed"


def where(config: StudyConfig, key: str) -> str:
    """`FILE: key`, where a message about the study file's `key` points."""
    return f"{config.source_path or '<study>'}: {key}"


def _steps(low: float, high: float, step: float) -> list[float]:
    count = round((high - low) / step)
    # 12 significant digits drop the float noise of low + i * step (0.30000000000000004).
    return [float(f"{low + i * step:.12g}") for i in range(count + 1)]


def _values(dist: BaseDistribution) -> list[Any] | None:
    """Every value `dist` can take, or None for a continuous range."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    assert isinstance(dist, FloatDistribution)
    return None if dist.step is None else _steps(dist.low, dist.high, dist.step)


def finite_space(config: StudyConfig) -> dict[str, list[Any]] | None:
    """Every value of each searched parameter, or None when one of them is a continuous range."""
    space = {name: _values(dist) for name, dist in distributions(config).items()}
    if any(values is None for values in space.values()):
        return None
    return {name: values for name, values in space.items() if values is not None}


def grid_space(config: StudyConfig) -> dict[str, list[Any]]:
    """Every value of each searched parameter, for GridSampler; ConfigError for a continuous one."""
    space = finite_space(config)
    if space is None:
        name = next(n for n, d in distributions(config).items() if _values(d) is None)
        raise ConfigError(
            f"{where(config, 'sampler')}: grid needs a discrete space but {name} is a"
            " continuous range (give it a step or values)"
        )
    size = math.prod(len(v) for v in space.values())
    if size > _MAX_GRID:
        raise ConfigError(
            f"{where(config, 'sampler')}: the grid has {size} points (max {_MAX_GRID})"
        )
    return space
