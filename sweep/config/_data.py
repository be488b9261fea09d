"""The `data:` section of a study file: where the texts come from and how to read them.

The one schema of a dataset: the data layer (sweep.data) reads a `DataConfig` as it is (frozen,
so it hashes and per-process caches key on it), and every limit is checked here, at load, where
a mistake gets the study file's line and column.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sweep.config._fields import Float, Frozen, Int, base_dir, resolve_path
from sweep.config._yaml import PathError

__all__ = ["MIN_DEMO_SIZE", "MIN_MAX_LENGTH", "DataConfig", "HFConfig"]

MIN_MAX_LENGTH = 8  # tokens: fewer leaves no room for a text
MIN_DEMO_SIZE = 30  # rows of the synthetic demo data: fewer cannot be split by class


class HFConfig(Frozen):
    """A dataset on the Hugging Face hub or in its local cache: `load_dataset(path, name)`."""

    path: str = Field(min_length=1)
    name: str | None = None
    train_split: str = "train"
    validation_split: str | None = None
    revision: str | None = None


class DataConfig(Frozen):
    """Where the texts come from: exactly one of `train` (a file), `hf` or `demo`."""

    train: Path | None = None
    validation: Path | None = None
    hf: HFConfig | None = None
    demo: bool = False
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    max_length: Int = Field(128, ge=MIN_MAX_LENGTH)
    limit_train: Int | None = Field(None, ge=2)
    validation_fraction: Float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: Int = Field(0, ge=0)
    demo_size: Int = Field(2000, ge=MIN_DEMO_SIZE)

    @field_validator("train", "validation")
    @classmethod
    def _absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Relative paths are relative to the study file, so a study runs from any directory.
        return None if value is None else resolve_path(value, base_dir(info))

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
        if self.text_column == self.label_column:
            raise PathError(
                ("label_column",),
                f"text_column and label_column are both {self.text_column!r}",
            )
        return self
