"""The `sampler:` and `pruner:` of a study file.

Pruner settings are keyword arguments of the Optuna pruner's constructor, checked against a table
here so that loading a study never imports Optuna (a test keeps the table in step with Optuna's
real signatures).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_serializer, model_validator

from sweep.config._fields import Frozen, to_int
from sweep.config._yaml import PathError, unknown_key

__all__ = ["PRUNER_SETTINGS", "SAMPLERS", "PrunerConfig"]

SAMPLERS = ("tpe", "random", "cmaes", "gp", "grid")
# Settings a `pruner: {name: ..., key: value}` mapping may carry: keyword arguments of the Optuna
# pruner's constructor (a test checks them against the real signatures), each with
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


class PrunerConfig(Frozen):
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
                settings[key] = to_int(value)
            except ValueError as exc:
                raise PathError((key,), str(exc)) from None
            if settings[key] < least:
                raise PathError((key,), f"{key} must be >= {least}, got {settings[key]}")
        return {"name": name, "settings": settings}

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        return {"name": self.name, **self.settings}
