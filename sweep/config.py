"""Study files: YAML validated once, at load, into frozen pydantic models.

A study file names a dataset, a ladder of model sizes and a search space. `load_study` reads it
with `yaml.safe_load` semantics (no tags that run code), validates it into a `StudyConfig` and turns
every problem into one `ConfigError` line that names the file, the line and column, the dotted key
path and, for an unknown key, the nearest valid one.

This module stays light on purpose: `sweep status` and `sweep report` load configs and must not pay
for torch or optuna, so the sweep.data / sweep.models dataclasses are imported lazily inside the
conversion methods, and pruner settings are checked against a table here (tests keep the table in
step with optuna's constructors).
"""

from __future__ import annotations

import contextlib
import math
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from sweep._objectives import (
    COST,
    METRIC_GOALS,
    SINGLE_OBJECTIVE_SAMPLERS,
    MetricConfig,
    lists_cost,
)
from sweep._study_yaml import (
    PathError,
    config_error,
    error,
    find_duplicate_key,
    nearest,
    parse,
    position,
    short,
    unknown_key,
)

if TYPE_CHECKING:
    from sweep.data import DataSpec
    from sweep.models import ModelSpec

__all__ = [
    "COST",
    "METRIC_GOALS",
    "PARAM_KINDS",
    "PRUNER_SETTINGS",
    "SAMPLERS",
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

# The searchable parameters and the type each one's values take ("str" = a model name).
PARAM_KINDS: dict[str, str] = {
    "learning_rate": "float",
    "batch_size": "int",
    "epochs": "int",
    "model_size": "str",
    "weight_decay": "float",
    "warmup_ratio": "float",
}
_REQUIRED_PARAMS = ("learning_rate", "batch_size", "epochs")
SAMPLERS = ("tpe", "random", "cmaes", "gp", "grid")
# Settings a `pruner: {name: ..., key: value}` mapping may carry: keyword arguments of the Optuna
# pruner's constructor (tests/test_space.py checks them against the real signatures), each with
# the smallest value that makes sense and whether "auto" is allowed (where Optuna accepts it).
PRUNER_SETTINGS: dict[str, dict[str, tuple[int, bool]]] = {
    "hyperband": {
        "min_resource": (1, False),
        "max_resource": (1, True),
        "reduction_factor": (2, False),
        "bootstrap_count": (0, False),
    },
    "successive_halving": {
        "min_resource": (1, True),
        "reduction_factor": (2, False),
        "min_early_stopping_rate": (0, False),
        "bootstrap_count": (0, False),
    },
    "median": {
        "n_startup_trials": (0, False),
        "n_warmup_steps": (0, False),
        "interval_steps": (1, False),
        "n_min_trials": (1, False),
    },
    "none": {},
}
# Names of sweep.models.PRESETS, repeated here so validating `{preset: ...}` never imports torch
# (a test keeps the two in step).
_PRESET_NAMES = ("nano", "micro", "mini", "small")


def check_study_name(name: str) -> str:
    """`name` if it can name a study, else ValueError saying why.

    Free text otherwise ('/', spaces and unicode are fine): a name is never used as a path
    (sweep.paths), and it must be printable, so it shows as itself in every table and message.
    """
    if not name or len(name) > 500:
        raise ValueError("name must be 1 to 500 characters")
    if name != name.strip() or not name.isprintable():
        raise ValueError("name must be one line of printable characters without surrounding spaces")
    return name


def _to_float(value: object) -> float:
    """A finite float; strings such as "1e-5" (a string to YAML 1.1) count as numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {short(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(f"expected a number, got {short(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {short(value)}")
    return number


def _to_int(value: object) -> int:
    """An int; integral floats and numeric strings ("32", "1e3") are accepted, bools are not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = _to_float(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {short(value)}") from None
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {short(value)}")
    return int(number)


# Numeric fields of the file: pydantic's lax mode would take `true` for 1, so use our coercion.
Int = typing.Annotated[int, BeforeValidator(_to_int)]
Float = typing.Annotated[float, BeforeValidator(_to_float)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context or {}
    base = context.get("base_dir")
    return Path(base) if base is not None else None


def _resolve_path(value: Path, base: Path | None) -> Path:
    with contextlib.suppress(RuntimeError):  # "~user" of an unknown user: keep it literal
        value = value.expanduser()
    return (value if value.is_absolute() else (base or Path.cwd()) / value).resolve()


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system is not a local model
        return False


class HFConfig(_Frozen):
    """A dataset on the Hugging Face hub or in its local cache: `load_dataset(path, name)`."""

    path: str = Field(min_length=1)
    name: str | None = None
    train_split: str = "train"
    validation_split: str | None = None
    revision: str | None = None


class DataConfig(_Frozen):
    """Where the texts come from: exactly one of `train` (a file), `hf` or `demo`."""

    train: Path | None = None
    validation: Path | None = None
    hf: HFConfig | None = None
    demo: bool = False
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    max_length: Int = Field(128, ge=8)
    limit_train: Int | None = Field(None, ge=2)
    validation_fraction: Float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: Int = Field(0, ge=0)
    demo_size: Int = Field(2000, ge=20)

    @field_validator("train", "validation")
    @classmethod
    def _absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Relative paths are relative to the study file, so a study runs from any directory.
        return None if value is None else _resolve_path(value, _base_dir(info))

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k, v in (("train", self.train), ("hf", self.hf), ("demo", self.demo)) if v]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError(f"give exactly one of train, hf or demo: true (got {got})")
        if self.validation is not None and self.train is None:
            raise PathError(
                ("validation",),
                "validation is a file that goes with train (for hf use validation_split)",
            )
        return self


class ModelConfig(_Frozen):
    """One rung of the model-size ladder: a GPT-2 shape, a preset name, or a pretrained model."""

    n_layer: Int | None = Field(None, ge=1)
    n_embd: Int | None = Field(None, ge=1)
    n_head: Int | None = Field(None, ge=1)
    preset: str | None = None
    pretrained: str | None = Field(None, min_length=1)
    trust_remote_code: bool = False

    @field_validator("pretrained")
    @classmethod
    def _resolve(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = _base_dir(info)
        # Local-looking paths resolve against the study file's folder; anything else is a hub id.
        local = value.startswith(("./", "../", "/", "~", ".\\", "..\\")) or value in (".", "..")
        if local or (base is not None and _exists(base / value)):
            return str(_resolve_path(Path(value), base))
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        shape = [self.n_layer, self.n_embd, self.n_head]
        kinds = [
            k
            for k, given in (
                ("n_layer/n_embd/n_head", any(v is not None for v in shape)),
                ("preset", self.preset is not None),
                ("pretrained", self.pretrained is not None),
            )
            if given
        ]
        if len(kinds) != 1:
            got = " and ".join(kinds) if kinds else "none"
            raise ValueError(
                f"give one of {{n_layer, n_embd, n_head}}, {{preset: name}} or {{pretrained: path}}"
                f" (got {got})"
            )
        if kinds[0] == "n_layer/n_embd/n_head":
            for key, value in zip(("n_layer", "n_embd", "n_head"), shape, strict=True):
                if value is None:
                    raise ValueError(
                        f"a GPT-2 shape needs n_layer, n_embd and n_head ({key} missing)"
                    )
            if self.n_embd % self.n_head:
                raise PathError(
                    ("n_embd",),
                    f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})",
                )
        if self.preset is not None and self.preset not in _PRESET_NAMES:
            raise PathError(("preset",), unknown_key(self.preset, _PRESET_NAMES, "preset"))
        if self.trust_remote_code and self.pretrained is None:
            raise PathError(
                ("trust_remote_code",), "trust_remote_code applies to pretrained models"
            )
        return self

    @property
    def kind(self) -> str:
        """Which kind of rung this is: "shape", "preset" or "pretrained"."""
        return "preset" if self.preset else "pretrained" if self.pretrained else "shape"

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # Only the keys of this rung's kind, so the dump reads like the file and loads back.
        data = handler(self)
        if self.pretrained is None:
            data.pop("trust_remote_code", None)
        return {k: v for k, v in data.items() if v is not None}


class ParamConfig(_Frozen):
    """One parameter: a fixed `value` (written as a bare scalar), `values`, or a `min`..`max` range.

    Values are already coerced to the parameter's type by `StudyConfig` (see PARAM_KINDS).
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


# What each numeric parameter may be, and how to say it.
_BOUNDS: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def _coerce_value(name: str, value: object, models: typing.Collection[str] | None) -> Any:
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
    number = _to_float(value) if kind == "float" else _to_int(value)
    within, bound = _BOUNDS[name]
    if not within(number):
        raise ValueError(f"{name} must be {bound}, got {short(value)}")
    return number


def _on_step(value: float, low: float, step: float) -> bool:
    ratio = (value - low) / step
    return math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-9)


def _normalize_param(name: str, raw: object, models: typing.Collection[str] | None) -> dict:
    """Raw YAML of one parameter -> ParamConfig fields with typed values; PathError if wrong."""

    def coerce(value: object, path: tuple[str | int, ...]) -> Any:
        try:
            return _coerce_value(name, value, models)
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
    valid = ("value", "values", "min", "max", "log", "step")
    for key in raw:
        if key not in valid:
            raise PathError((key,), unknown_key(key, valid))
    shapes = [s for s in ("value", "values", "min") if s in raw] + (
        ["min"] if "max" in raw and "min" not in raw else []
    )
    if len(shapes) != 1:
        raise PathError((), "give exactly one of a fixed value, {values: [...]} or {min, max}")
    if "value" in raw or "values" in raw:
        extra = [k for k in ("log", "step") if k in raw]
        if extra:
            raise PathError((extra[0],), f"{extra[0]} applies to a min/max range")
    if "value" in raw:
        if isinstance(raw["value"], list | dict) or raw["value"] is None:
            raise PathError(("value",), "a fixed value must be a scalar")
        return {"value": coerce(raw["value"], ("value",))}
    if "values" in raw:
        values = raw["values"]
        if not isinstance(values, list):
            raise PathError(("values",), f"values must be a list, got {short(values)}")
        if not values:
            raise PathError(("values",), "values is empty")
        coerced = [coerce(v, ("values", i)) for i, v in enumerate(values)]
        for i, v in enumerate(coerced):
            if v in coerced[:i]:
                raise PathError(("values", i), f"duplicate value {short(v)}")
        return {"values": tuple(coerced)}
    # A min..max range.
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
    step = raw.get("step")
    if step is not None:
        try:
            step = _to_float(step) if PARAM_KINDS[name] == "float" else _to_int(step)
        except ValueError as exc:
            raise PathError(("step",), str(exc)) from None
        if step <= 0:
            raise PathError(("step",), f"step must be > 0, got {step}")
        if log and step != 1:
            raise PathError(("step",), "a log range cannot have a step")
        if log:
            step = None  # step 1 on a log int range is Optuna's default; keep one spelling
        elif not _on_step(high, low, step):
            raise PathError(
                ("max",), f"max - min ({high} - {low}) is not a multiple of step {step}"
            )
    return {"min": low, "max": high, "log": log, "step": step}


class PrunerConfig(_Frozen):
    """A pruner name plus keyword settings for its Optuna constructor (see PRUNER_SETTINGS)."""

    name: str = "hyperband"
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        # The file writes `pruner: median` or `pruner: {name: median, n_warmup_steps: 2}`.
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict):
            return data  # pydantic reports the type
        name = data.get("name", "hyperband")
        if not isinstance(name, str) or name not in PRUNER_SETTINGS:
            where = ("name",) if "name" in data else ()
            raise PathError(where, unknown_key(name, PRUNER_SETTINGS, "pruner"))
        allowed = PRUNER_SETTINGS[name]
        settings: dict[str, Any] = {}
        for key, value in data.items():
            if key == "name":
                continue
            if key not in allowed:
                if not allowed:
                    raise PathError((key,), f"the {name} pruner takes no settings")
                raise PathError((key,), unknown_key(key, allowed, f"{name} pruner setting"))
            least, auto_ok = allowed[key]
            if auto_ok and value == "auto":
                settings[key] = value
                continue
            try:
                settings[key] = _to_int(value)
            except ValueError as exc:
                raise PathError((key,), str(exc)) from None
            if settings[key] < least:
                raise PathError((key,), f"{key} must be >= {least}, got {settings[key]}")
        return {"name": name, "settings": settings}

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        return {"name": self.name, **self.settings}


class StudyConfig(_Frozen):
    """A validated study file. Build it with `load_study(path)`."""

    name: str = Field(min_length=1, max_length=500)
    data: DataConfig
    models: dict[str, ModelConfig] = Field(min_length=1)
    parameters: dict[str, ParamConfig]
    metric: MetricConfig = Field(default_factory=MetricConfig)
    sampler: str = "tpe"
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    trials: Int = Field(50, ge=1)
    seed: Int = Field(0, ge=0, lt=2**32)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    storage: str | None = Field(None, min_length=1)
    keep_best: Int = Field(1, ge=0)
    source_path: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_from_file(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and "source_path" in data and (info.context or {}).get("file"):
            raise PathError(("source_path",), unknown_key("source_path", _FILE_KEYS))
        if isinstance(data, dict) and "pruner" not in data and lists_cost(data.get("metric")):
            # Optuna cannot prune a multi-objective study: its default pruner is none.
            data = {**data, "pruner": "none"}
        return data

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return check_study_name(value)

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, raw: Any, info: ValidationInfo) -> Any:
        if not isinstance(raw, dict):
            raise ValueError(f"parameters must be a mapping of name -> value, got {short(raw)}")
        models = info.data.get("models")
        out = {}
        for name, spec in raw.items():
            if name not in PARAM_KINDS:
                raise PathError((name,), unknown_key(name, PARAM_KINDS, "parameter"))
            try:
                out[name] = _normalize_param(name, spec, models)
            except PathError as exc:
                raise PathError((name, *exc.path), str(exc)) from None
        for name in _REQUIRED_PARAMS:
            if name not in out:
                raise ValueError(f"missing parameter '{name}'")
        if "model_size" not in out and models is not None:
            if len(models) != 1:
                raise ValueError(
                    f"missing parameter 'model_size' ({len(models)} models to pick from)"
                )
            out["model_size"] = {"value": next(iter(models))}
        return out

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value not in SAMPLERS:
            raise ValueError(unknown_key(value, SAMPLERS, "sampler"))
        metric: MetricConfig | None = info.data.get("metric")
        if metric is not None and metric.cost and value in SINGLE_OBJECTIVE_SAMPLERS:
            multi = [s for s in SAMPLERS if s not in SINGLE_OBJECTIVE_SAMPLERS]
            raise ValueError(
                f"{value} cannot search a multi-objective study (metric lists cost);"
                f" use {', '.join(multi)}"
            )
        params: dict[str, ParamConfig] | None = info.data.get("parameters")
        if value == "grid" and params:
            for name, param in params.items():
                if param.is_range and PARAM_KINDS[name] == "float" and param.step is None:
                    raise ValueError(
                        f"grid needs a discrete space but {name} is a continuous range"
                        " (give it a step or values)"
                    )
        return value

    @field_validator("pruner")
    @classmethod
    def _pruner(cls, value: PrunerConfig, info: ValidationInfo) -> PrunerConfig:
        metric: MetricConfig | None = info.data.get("metric")
        if metric is not None and metric.cost and value.name != "none":
            raise PathError(
                (),
                f"Optuna cannot prune a multi-objective study (metric lists cost), so the"
                f" {value.name} pruner would never act; write pruner: none or leave it out",
            )
        params: dict[str, ParamConfig] | None = info.data.get("parameters")
        least = value.settings.get("min_resource", 1)
        if params and value.name == "hyperband" and isinstance(least, int):
            top = _max_epochs(params["epochs"])
            if least > value.settings.get("max_resource", top):
                raise PathError(("min_resource",), f"min_resource {least} > max epochs {top}")
        return value

    @field_validator("enqueue", mode="before")
    @classmethod
    def _enqueue(cls, raw: Any, info: ValidationInfo) -> Any:
        params: dict[str, ParamConfig] | None = info.data.get("parameters")
        if not isinstance(raw, list) or params is None:
            return raw  # pydantic reports the type; without parameters there is nothing to check
        models = info.data.get("models")
        out = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict):
                raise PathError((i,), f"an enqueued trial is a mapping, got {short(entry)}")
            out.append({})
            for key, value in entry.items():
                if key not in params:
                    raise PathError((i, key), unknown_key(key, params, "parameter"))
                try:
                    out[-1][key] = _in_space(key, params[key], value, models)
                except ValueError as exc:
                    raise PathError((i, key), str(exc)) from None
        return out

    def max_epochs(self) -> int:
        """The most epochs any trial can run (the pruners' max resource)."""
        return _max_epochs(self.parameters["epochs"])

    def data_spec(self) -> DataSpec:
        """The sweep.data.DataSpec of this study (paths already absolute)."""
        from sweep.data import DataSpec, HFSource  # lazy: keeps this module light

        d = self.data
        hf = None if d.hf is None else HFSource(**d.hf.model_dump())
        return DataSpec(
            train=d.train,
            validation=d.validation,
            hf=hf,
            demo=d.demo,
            text_column=d.text_column,
            label_column=d.label_column,
            max_length=d.max_length,
            limit_train=d.limit_train,
            validation_fraction=d.validation_fraction,
            split_seed=d.split_seed,
            demo_size=d.demo_size,
        )

    def model_specs(self) -> dict[str, ModelSpec]:
        """The model ladder as sweep.models specs (FromConfigShape / PretrainedModel)."""
        from sweep.models import PRESETS, FromConfigShape, PretrainedModel  # lazy: may import torch

        specs: dict[str, ModelSpec] = {}
        for name, m in self.models.items():
            if m.kind == "preset":
                specs[name] = PRESETS[m.preset]
            elif m.kind == "pretrained":
                specs[name] = PretrainedModel(m.pretrained, trust_remote_code=m.trust_remote_code)
            else:
                specs[name] = FromConfigShape(n_layer=m.n_layer, n_embd=m.n_embd, n_head=m.n_head)
        return specs

    def resolved(self) -> dict[str, Any]:
        """The whole resolved config as JSON-able data (`StudyConfig.model_validate` reads it).

        This is what is stored on the study, where anyone who can read the study can see it
        (the dashboard serves it): the storage URL's password is replaced by ***.
        """
        data = self.model_dump(mode="json")
        if data.get("storage"):
            from sweep.storage import redact  # lazy: keeps this module free of SQLAlchemy

            data["storage"] = redact(data["storage"])
        return data


_FILE_KEYS = tuple(k for k in StudyConfig.model_fields if k != "source_path")


def _max_epochs(param: ParamConfig) -> int:
    if param.fixed:
        return param.value
    return param.max if param.is_range else max(param.values)


def _in_space(name: str, param: ParamConfig, value: object, models: Any) -> Any:
    """`value` coerced to parameter `name`'s type; ValueError unless the space can produce it."""
    value = _coerce_value(name, value, models)
    if param.fixed:
        if value != param.value:
            raise ValueError(f"{name} is fixed at {param.value} in parameters, got {value}")
    elif param.values is not None:
        if value not in param.values:
            raise ValueError(f"{name} {value!r} is not one of the values {list(param.values)}")
    elif not param.min <= value <= param.max:
        raise ValueError(f"{name} {value} is outside the range {param.min}..{param.max}")
    elif param.step is not None and not _on_step(value, param.min, param.step):
        raise ValueError(f"{name} {value} is not on the grid {param.min} + k * {param.step}")
    return value


def bundled_demo_path() -> Path:
    """The demo study shipped inside the package (offline, synthetic data)."""
    return Path(__file__).resolve().parent / "studies" / "demo.yaml"


def load_study(path: Path | str) -> StudyConfig:
    """Read and validate a study file; any problem is one ConfigError line with file:line:col."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read study file: {exc}") from None
    root, data = parse(text, path)
    if data is None:
        raise error(f"{path}: the study file is empty")
    if not isinstance(data, dict):
        raise error(
            f"{path}{position(root.start_mark)}: a study file is a mapping of keys"
            f" (name, data, ...), got {type(data).__name__}"
        )
    try:
        duplicate = find_duplicate_key(root)
    except RecursionError:
        duplicate = None  # absurdly deep nesting; validation below reports what is wrong
    if duplicate is not None:
        raise error(f"{path}{position(duplicate.start_mark)}: duplicate key '{duplicate.value}'")
    base = path.resolve().parent
    try:
        config = StudyConfig.model_validate(data, context={"base_dir": base, "file": True})
    except ValidationError as exc:
        raise config_error(exc, path, root, StudyConfig, _FILE_KEYS) from None
    except RecursionError:
        raise error(f"{path}: the study file refers to itself (recursive YAML alias)") from None
    return config.model_copy(update={"source_path": path.resolve()})
