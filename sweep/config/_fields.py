"""The field types every part of a study file shares: numbers as a user writes them, frozen
models that forbid unknown keys, paths relative to the study file, and the study's name."""

from __future__ import annotations

import contextlib
import math
import typing
from pathlib import Path

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from sweep.config._yaml import short


def check_study_name(name: str) -> str:
    """`name` if it can name a study, else ValueError saying why.

    Free text otherwise ('/', spaces and unicode are fine): a name is never used as a path
    (sweep.study.folders), and it must be printable, so it shows as itself everywhere.
    """
    if not name or len(name) > 500:
        raise ValueError("name must be 1 to 500 characters")
    if name != name.strip() or not name.isprintable():
        raise ValueError("name must be one line of printable characters without surrounding spaces")
    return name


def to_float(value: object) -> float:
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


def to_int(value: object) -> int:
    """An int; integral floats and numeric strings ("32", "1e3") are accepted, bools are not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = to_float(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {short(value)}") from None
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {short(value)}")
    return int(number)


# Numeric fields of the file: pydantic's lax mode would take `true` for 1, so use our coercion.
Int = typing.Annotated[int, BeforeValidator(to_int)]
Float = typing.Annotated[float, BeforeValidator(to_float)]


class Frozen(BaseModel):
    """A part of a study file: frozen once validated, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def base_dir(info: ValidationInfo) -> Path | None:
    """The folder of the study file being validated (relative paths are relative to it)."""
    context = info.context or {}
    base = context.get("base_dir")
    return Path(base) if base is not None else None


def resolve_path(value: Path, base: Path | None) -> Path:
    """`value` made absolute against `base` (the study file's folder), `~` expanded."""
    with contextlib.suppress(RuntimeError):  # "~user" of an unknown user: keep it literal
        value = value.expanduser()
    return (value if value.is_absolute() else (base or Path.cwd()) / value).resolve()


def exists(path: Path) -> bool:
    """Whether `path` exists (False for a name the file system cannot even look up)."""
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system is not a local model
        return False
