"""The `metric:` of a study file: the validation metric, and optionally cost as a second one.

`metric: val_loss` (or `{name: val_accuracy, goal: maximize}`) is one objective. A list of two,
`metric: [val_loss, cost]` in either order, makes the study multi-objective: the validation
metric and the trial's cost (training seconds x GPUs, minimized, see sweep.study.cost_of).
Optuna's objectives are then always (metric, cost): values[0] is the metric everywhere.

Like the rest of sweep.config, light: no torch, no optuna.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_serializer, model_validator

from sweep.config._yaml import PathError, short, unknown_key

METRIC_GOALS: dict[str, str] = {"val_loss": "minimize", "val_accuracy": "maximize"}
COST = "cost"  # the second objective a study may add: training seconds x GPUs, minimized
# Samplers that cannot search a multi-objective study (Optuna's CmaEsSampler raises on one);
# tests/test_multi_objective.py checks the others against Optuna.
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)


def _is_cost(entry: Any) -> bool:
    """Whether one raw `metric:` list entry names the cost objective."""
    name = entry.get("name") if isinstance(entry, dict) else entry
    return name == COST


def _metric_list(entries: list[Any]) -> dict[str, Any]:
    """`metric: [val_loss, cost]` (either order) -> the fields of a MetricConfig with cost.

    PathErrors name the entry (`metric[1]`, `metric[1].goal`) so the message points at it.
    """
    if len(entries) > 2:
        raise PathError((2,), "metric lists at most two objectives: the validation metric and cost")
    if len(entries) == 1 and _is_cost(entries[0]):
        raise PathError((), "cost needs a validation metric to go with it, e.g. [val_loss, cost]")
    if len(entries) < 2:
        raise PathError(
            (), "a metric list names two objectives, e.g. [val_loss, cost]; for one, write it alone"
        )
    valid = (*METRIC_GOALS, COST)
    metric: Any = None
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            if entry not in valid:
                raise PathError((i,), unknown_key(entry, valid, "objective"))
        elif isinstance(entry, dict):
            for key in entry:
                if key not in ("name", "goal"):
                    raise PathError((i, key), unknown_key(key, ("name", "goal")))
            if "name" not in entry:
                raise PathError((i,), "an objective needs a name (val_loss, val_accuracy or cost)")
            if entry["name"] not in valid:
                raise PathError((i, "name"), unknown_key(entry["name"], valid, "objective"))
        else:
            raise PathError((i,), f"an objective is a name or {{name, goal}}, got {short(entry)}")
        if _is_cost(entry):
            goal = entry.get("goal", "minimize") if isinstance(entry, dict) else "minimize"
            if goal != "minimize":
                shown = goal if isinstance(goal, str) else short(goal)
                raise PathError((i, "goal"), f"cost is to minimize, not to {shown}")
        elif metric is not None:
            raise PathError(
                (i,), "only one validation metric; the second objective can only be cost"
            )
        else:
            metric = entry
            expected = METRIC_GOALS[entry if isinstance(entry, str) else entry["name"]]
            if isinstance(entry, dict) and entry.get("goal", expected) != expected:
                # Checked here, not by MetricConfig._check, so the error says which entry.
                raise PathError(
                    (i, "goal"), f"{entry['name']} is to {expected}, not to {entry['goal']}"
                )
    if metric is None:
        raise PathError((1,), "cost is listed twice; list the validation metric and cost")
    fields = {"name": metric} if isinstance(metric, str) else dict(metric)
    return {**fields, "cost": True}


class MetricConfig(BaseModel):
    """The objective: `val_loss` (minimize) or `val_accuracy` (maximize), and optionally cost.

    `metric: [val_loss, cost]` makes the study multi-objective: the validation metric and the
    trial's cost (training seconds x GPUs, minimized). Whatever order the file lists them in,
    the study's objectives are (metric, cost): values[0] is always the validation metric.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "val_loss"
    goal: str = "minimize"
    cost: bool = False  # cost (training seconds x GPUs) is a second objective

    @model_validator(mode="before")
    @classmethod
    def _default_goal(cls, data: Any, info: ValidationInfo) -> Any:
        # `metric: val_accuracy` is short for {name: val_accuracy}; the goal follows from the name.
        if isinstance(data, str):
            if data == COST:
                raise PathError(
                    (), "cost needs a validation metric to go with it, e.g. [val_loss, cost]"
                )
            data = {"name": data}
        elif isinstance(data, list):
            data = _metric_list(data)
        elif isinstance(data, dict):
            # One spelling in a file: the list. (`cost=True` stays open to code building one.)
            if "cost" in data and (info.context or {}).get("file"):
                raise PathError(
                    ("cost",), "to add cost as an objective, write metric: [val_loss, cost]"
                )
            if data.get("name") == COST:
                raise PathError(
                    ("name",), "cost needs a validation metric to go with it, e.g. [val_loss, cost]"
                )
        if isinstance(data, dict) and "goal" not in data and data.get("name") in METRIC_GOALS:
            data = {**data, "goal": METRIC_GOALS[data["name"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> MetricConfig:
        if self.name not in METRIC_GOALS:
            raise PathError(("name",), unknown_key(self.name, METRIC_GOALS, "metric"))
        expected = METRIC_GOALS[self.name]
        if self.goal != expected:
            raise PathError(("goal",), f"{self.name} is to {expected}, not to {self.goal}")
        return self

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(name, goal) of each objective of the study, in Optuna's order: the metric first."""
        return [(self.name, self.goal)] + ([(COST, "minimize")] if self.cost else [])

    @property
    def directions(self) -> list[str]:
        """The Optuna study directions ("minimize" / "maximize"), one per objective."""
        return [goal for _, goal in self.objectives]

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        # As the file writes it: a mapping for one objective, a list of two with cost.
        metric = {"name": self.name, "goal": self.goal}
        return [metric, {"name": COST, "goal": "minimize"}] if self.cost else metric


def lists_cost(metric: Any) -> bool:
    """Whether a raw `metric:` value (or a MetricConfig) makes cost an objective."""
    if isinstance(metric, MetricConfig):
        return metric.cost
    return isinstance(metric, list) and any(_is_cost(entry) for entry in metric)
