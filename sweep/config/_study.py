"""A whole study file: `StudyConfig`, and `load_study`, which reads and validates one.

`load_study` reads the YAML with the safe loader's semantics (no tags that run code), validates
it into a frozen `StudyConfig` and turns every problem into one `ConfigError` line that names the
file, the line and column, the dotted key path and, for an unknown key, the nearest valid one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from sweep.config._data import DataConfig
from sweep.config._fields import Frozen, Int, check_study_name
from sweep.config._metric import SINGLE_OBJECTIVE_SAMPLERS, MetricConfig, lists_cost
from sweep.config._models import ModelConfig
from sweep.config._params import (
    PARAM_KINDS,
    REQUIRED_PARAMS,
    ParamConfig,
    in_space,
    max_of,
    normalize_param,
)
from sweep.config._search import SAMPLERS, PrunerConfig
from sweep.config._yaml import (
    PathError,
    config_error,
    error,
    find_duplicate_key,
    parse,
    position,
    short,
    unknown_key,
)
from sweep.errors import redact

__all__ = ["StudyConfig", "bundled_demo_path", "load_study"]


class StudyConfig(Frozen):
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
                out[name] = normalize_param(name, spec, models)
            except PathError as exc:
                raise PathError((name, *exc.path), str(exc)) from None
        for name in REQUIRED_PARAMS:
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
            top = max_of(params["epochs"])
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
                    out[-1][key] = in_space(key, params[key], value, models)
                except ValueError as exc:
                    raise PathError((i, key), str(exc)) from None
        return out

    def max_epochs(self) -> int:
        """The most epochs any trial can run (the pruners' max resource)."""
        return max_of(self.parameters["epochs"])

    def resolved(self) -> dict[str, Any]:
        """The whole resolved config as JSON-able data (`StudyConfig.model_validate` reads it).

        This is what is stored on the study, where anyone who can read the study can see it
        (the dashboard serves it): the storage URL's password is replaced by ***.
        """
        data = self.model_dump(mode="json")
        if data.get("storage"):
            data["storage"] = redact(data["storage"])
        return data


_FILE_KEYS = tuple(k for k in StudyConfig.model_fields if k != "source_path")


def bundled_demo_path() -> Path:
    """The demo study shipped inside the package (offline, synthetic data)."""
    return Path(__file__).resolve().parent.parent / "studies" / "demo.yaml"


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
