"""The `models:` section of a study file: the ladder of model sizes a trial picks from.

A rung is a GPT-2 shape (n_layer/n_embd/n_head, randomly initialised), a named preset of such a
shape, or a pretrained model (a local folder or a hub id). The training code builds models from
a `ModelConfig` as it is (sweep.training.models); the presets' shapes live here, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_serializer, model_validator

from sweep.config._fields import Frozen, Int, base_dir, exists, resolve_path
from sweep.config._yaml import PathError, unknown_key

__all__ = ["PRESETS", "ModelConfig"]

# The preset ladder, (n_layer, n_embd, n_head). Each rung is roughly 4x the compute of the one
# below; `small` is GPT-2 small (124M parameters with GPT-2's 50k vocabulary; fewer with a
# study's own, smaller BPE vocabulary).
PRESETS: dict[str, tuple[int, int, int]] = {
    "nano": (2, 64, 2),
    "micro": (4, 128, 4),
    "mini": (6, 256, 8),
    "small": (12, 768, 12),
}


class ModelConfig(Frozen):
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
        base = base_dir(info)
        # Local-looking paths resolve against the study file's folder; anything else is a hub id.
        local = value.startswith(("./", "../", "/", "~", ".\\", "..\\")) or value in (".", "..")
        if local or (base is not None and exists(base / value)):
            return str(resolve_path(Path(value), base))
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
        if self.preset is not None and self.preset not in PRESETS:
            raise PathError(("preset",), unknown_key(self.preset, PRESETS, "preset"))
        if self.trust_remote_code and self.pretrained is None:
            raise PathError(
                ("trust_remote_code",), "trust_remote_code applies to pretrained models"
            )
        return self

    @property
    def kind(self) -> str:
        """Which kind of rung this is: "shape", "preset" or "pretrained"."""
        return "preset" if self.preset else "pretrained" if self.pretrained else "shape"

    @property
    def shape(self) -> tuple[int, int, int] | None:
        """(n_layer, n_embd, n_head) of a from-config rung (a preset's included), else None."""
        if self.preset is not None:
            return PRESETS[self.preset]
        if self.n_layer is not None and self.n_embd is not None and self.n_head is not None:
            return (self.n_layer, self.n_embd, self.n_head)
        return None

    def describe(self) -> str:
        """A stable one-line identity of the rung (part of a checkpoint's fingerprint)."""
        if self.pretrained is not None:
            return (
                f"PretrainedModel(source={self.pretrained!r}, "
                f"trust_remote_code={self.trust_remote_code})"
            )
        n_layer, n_embd, n_head = self.shape or (0, 0, 0)
        return f"FromConfigShape(n_layer={n_layer}, n_embd={n_embd}, n_head={n_head})"

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # Only the keys of this rung's kind, so the dump reads like the file and loads back.
        data = handler(self)
        if self.pretrained is None:
            data.pop("trust_remote_code", None)
        return {k: v for k, v in data.items() if v is not None}
