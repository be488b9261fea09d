"""The `parameters:` section of a study file: each parameter fixed, a list of values, or a range.

`PARAM_KINDS` names the parameters a study may set and the type of each one's values; the values
are coerced to that type and checked against the parameter's bounds here, at load, so the search
(sweep.search) and the training loop only ever see valid values.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from pydantic import model_serializer

from sweep.config._fields import Frozen, to_float, to_int
from sweep.config._yaml import PathError, nearest, short, unknown_key

__all__ = [
    "PARAM_KINDS",
    "REQUIRED_PARAMS",
    "ParamConfig",
    "in_space",
    "max_of",
    "normalize_param",
    "on_step",
]

# The searchable parameters and the type each one's values take ("str" = a model name).
PARAM_KINDS: dict[str, str] = {
    "learning_rate": "float",
    "batch_size": "int",
    "epochs": "int",
    "model_size": "str",
    "weight_decay": "float",
    "warmup_ratio": "float",
}
REQUIRED_PARAMS = ("learning_rate", "batch_size", "epochs")

# What each numeric parameter may be, and how to say it.
_BOUNDS: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
}
_SPEC_KEYS = ("value", "values", "min", "max", "log", "step")


class ParamConfig(Frozen):
    """One parameter: a fixed `value` (written as a bare scalar), `values`, or a `min`..`max` range.

    Values are already coerced to the parameter's type (see PARAM_KINDS, `normalize_param`).
    """

    value: Any = None
    values: tuple[Any, ...] | None = None
    min: Any = None
    max: Any = None
    log: bool = False
    step: Any = None

    @property
    def fixed(self) -> bool:
        """True for a fixed value, which is not searched."""
        return self.values is None and self.min is None

    @property
    def is_range(self) -> bool:
        """True for a min..max range (IntDistribution / FloatDistribution)."""
        return self.min is not None

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        if self.fixed:
            return self.value
        if self.values is not None:
            return {"values": list(self.values)}
        out: dict[str, Any] = {"min": self.min, "max": self.max}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def coerce_value(name: str, value: object, models: typing.Collection[str] | None) -> Any:
    """One value of parameter `name`, converted to its type and checked against its bounds."""
    kind = PARAM_KINDS[name]
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a model name, got {short(value)}")
        if models is not None and value not in models:
            near = nearest(value, models)
            hint = f"did you mean '{near}'?" if near else f"models: {', '.join(models)}"
            raise ValueError(f"'{value}' is not in models ({hint})")
        return value
    number = to_float(value) if kind == "float" else to_int(value)
    within, bound = _BOUNDS[name]
    if not within(number):
        raise ValueError(f"{name} must be {bound}, got {short(value)}")
    return number


def on_step(value: float, low: float, step: float) -> bool:
    """Whether `value` is `low` plus a whole number of `step`s (within float noise)."""
    ratio = (value - low) / step
    return math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9)


def normalize_param(name: str, raw: object, models: typing.Collection[str] | None) -> dict:
    """Raw YAML of one parameter -> ParamConfig fields with typed values; PathError if wrong."""

    def coerce(value: object, path: tuple[str | int, ...]) -> Any:
        try:
            return coerce_value(name, value, models)
        except ValueError as exc:
            raise PathError(path, str(exc)) from None

    if isinstance(raw, ParamConfig):
        raw = raw.model_dump()
    if isinstance(raw, list):
        raise PathError((), "a fixed value must be a scalar; to search, write {values: [...]}")
    if not isinstance(raw, dict):
        if raw is None:
            raise PathError((), "empty value; give a value, {values: [...]} or {min, max}")
        return {"value": coerce(raw, ())}
    _check_spec_keys(raw)
    if "value" in raw:
        if isinstance(raw["value"], list | dict) or raw["value"] is None:
            raise PathError(("value",), "a fixed value must be a scalar")
        return {"value": coerce(raw["value"], ("value",))}
    if "values" in raw:
        return {"values": _values(raw["values"], coerce)}
    return _range(name, raw, coerce)


def _check_spec_keys(raw: dict) -> None:
    """Exactly one of value / values / min..max, and log and step only with a range."""
    for key in raw:
        if key not in _SPEC_KEYS:
            raise PathError((key,), unknown_key(key, _SPEC_KEYS))
    shapes = [s for s in ("value", "values", "min") if s in raw] + (
        ["min"] if "max" in raw and "min" not in raw else []
    )
    if len(shapes) != 1:
        raise PathError((), "give exactly one of a fixed value, {values: [...]} or {min, max}")
    if "value" in raw or "values" in raw:
        extra = [k for k in ("log", "step") if k in raw]
        if extra:
            raise PathError((extra[0],), f"{extra[0]} applies to a min/max range")


def _values(values: object, coerce: typing.Callable[[object, tuple], Any]) -> tuple[Any, ...]:
    """`{values: [...]}`: a non-empty list of distinct values, each coerced."""
    if not isinstance(values, list):
        raise PathError(("values",), f"values must be a list, got {short(values)}")
    if not values:
        raise PathError(("values",), "values is empty")
    coerced = [coerce(v, ("values", i)) for i, v in enumerate(values)]
    for i, v in enumerate(coerced):
        if v in coerced[:i]:
            raise PathError(("values", i), f"duplicate value {short(v)}")
    return tuple(coerced)


def _range(name: str, raw: dict, coerce: typing.Callable[[object, tuple], Any]) -> dict:
    """`{min, max, log?, step?}`: the bounds in order, a log range above 0, max on the grid."""
    if PARAM_KINDS[name] == "str":
        raise PathError((), f"{name} takes {{values: [...]}} or a fixed name, not a range")
    for key in ("min", "max"):
        if key not in raw:
            raise PathError((), f"a range needs both min and max ({key} missing)")
    low, high = coerce(raw["min"], ("min",)), coerce(raw["max"], ("max",))
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise PathError(("log",), f"log must be true or false, got {short(log)}")
    if low > high:
        raise PathError(("min",), f"min ({low}) > max ({high})")
    if log and low <= 0:
        raise PathError(("min",), f"a log range needs min > 0, got {low}")
    step = _step(name, raw.get("step"), low, high, log)
    return {"min": low, "max": high, "log": log, "step": step}


def _step(name: str, step: object, low: float, high: float, log: bool) -> Any:
    """A range's step, checked against its bounds; None where Optuna's default is the same."""
    if step is None:
        return None
    try:
        step = to_float(step) if PARAM_KINDS[name] == "float" else to_int(step)
    except ValueError as exc:
        raise PathError(("step",), str(exc)) from None
    if step <= 0:
        raise PathError(("step",), f"step must be > 0, got {step}")
    if log and step != 1:
        raise PathError(("step",), "a log range cannot have a step")
    if log:
        return None  # step 1 on a log int range is Optuna's default; keep one spelling
    if not on_step(high, low, step):
        raise PathError(("max",), f"max - min ({high} - {low}) is not a multiple of step {step}")
    return step


def max_of(param: ParamConfig) -> Any:
    """The largest value `param` can take."""
    if param.fixed:
        return param.value
    return param.max if param.is_range else max(param.values)


def in_space(name: str, param: ParamConfig, value: object, models: Any) -> Any:
    """`value` coerced to parameter `name`'s type; ValueError unless the space can produce it."""
    value = coerce_value(name, value, models)
    if param.fixed:
        if value != param.value:
            raise ValueError(f"{name} is fixed at {param.value} in parameters, got {value}")
    elif param.values is not None:
        if value not in param.values:
            raise ValueError(f"{name} {value!r} is not one of the values {list(param.values)}")
    elif not param.min <= value <= param.max:
        raise ValueError(f"{name} {value} is outside the range {param.min}..{param.max}")
    elif param.step is not None and not on_step(value, param.min, param.step):
        raise ValueError(f"{name} {value} is not on the grid {param.min} + k * {param.step}")
    return value
