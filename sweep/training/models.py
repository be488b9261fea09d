"""Building a rung of the model-size ladder: a from-config GPT-2 shape or a pretrained model.

A study names its model sizes (sweep.config.ModelConfig); each is either a GPT-2 shape with random
initialisation (a preset or n_layer/n_embd/n_head: it needs no download, and its tokenizer is a
BPE trained on the study's data) or a pretrained model (a local directory or a hub id loaded with
`AutoModelForSequenceClassification`). `build_model` turns either into a ready `PreTrainedModel`
with the classification head sized for the study's labels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedModel,
)

from sweep.config import ModelConfig
from sweep.errors import ModelError

log = logging.getLogger(__name__)


def build_model(
    spec: ModelConfig,
    *,
    num_labels: int,
    vocab_size: int,
    pad_token_id: int,
    max_length: int,
    label_names: tuple[str, ...],
) -> PreTrainedModel:
    """Build a sequence classifier for `spec` with `num_labels` outputs.

    From-config shapes get a GPT2ForSequenceClassification sized to the tokenizer (`vocab_size`) and
    to `max_length` positions. Pretrained models are loaded from safetensors weights only, never
    run remote code unless the spec allows it, and never touch the network for a local path.
    Raises ModelError when the model cannot be built or loaded (naming the path or id).
    """
    id2label = {i: name for i, name in enumerate(label_names)}
    label2id = {name: i for i, name in id2label.items()}
    if len(id2label) != num_labels:
        raise ModelError(f"{num_labels} labels but {len(label_names)} label names: {label_names}")
    if spec.pretrained is not None:
        return _load_pretrained(
            spec,
            num_labels=num_labels,
            vocab_size=vocab_size,
            pad_token_id=pad_token_id,
            id2label=id2label,
            label2id=label2id,
        )
    shape = spec.shape
    if shape is None:
        raise ModelError(f"model {spec!r} is neither a shape nor a pretrained model")
    n_layer, n_embd, n_head = shape
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=max_length,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        num_labels=num_labels,
        id2label=id2label,
        label2id=label2id,
        # The classifier pools the last token that is not the pad token, so the pad id is the
        # one special id it needs; GPT-2's bos/eos default (50256) lies outside a study's own
        # vocabulary, so they are left unset.
        pad_token_id=pad_token_id,
        bos_token_id=None,
        eos_token_id=None,
        # GPT-2's "gelu_new" is the tanh GELU written out in Python (8 kernels forward, more
        # backward); torch's fused tanh GELU computes the same function (max diff ~2e-7) in one.
        activation_function="gelu_pytorch_tanh",
    )
    return GPT2ForSequenceClassification(config)


def _looks_local(source: str) -> bool:
    """A local path is one that exists or is written like one (a hub id is `name` or `org/name`)."""
    return (
        os.path.exists(source)
        or source.startswith(("./", "../", "/", "~"))
        or "\\" in source
        or source.count("/") > 1
    )


def _load_pretrained(
    spec: ModelConfig,
    *,
    num_labels: int,
    vocab_size: int,
    pad_token_id: int,
    id2label: dict[int, str],
    label2id: dict[str, int],
) -> PreTrainedModel:
    source = str(spec.pretrained)
    if _looks_local(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ModelError(f"pretrained model {source}: no such directory")
        if not (path / "config.json").is_file():
            raise ModelError(f"pretrained model {source}: the directory holds no config.json")
        source = str(path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=num_labels,
            id2label=id2label,
            label2id=label2id,
            trust_remote_code=spec.trust_remote_code,
            use_safetensors=True,
            # A checkpoint with a classification head for another label set: its head is replaced
            # (freshly initialised), which is what fine-tuning on this study's labels means.
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError, KeyError, ImportError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "custom code" in str(exc) and not spec.trust_remote_code:
            hint = "; set trust_remote_code: true for this model if you trust its code"
        raise ModelError(
            f"pretrained model {spec.pretrained}: cannot load ({first_line}){hint}"
        ) from exc
    # The tokenizer may have gained a pad token; the embedding table must cover every id it emits.
    if vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
    # GPT-style classifiers pool the last token that is not the pad token, so they must know it.
    model.config.pad_token_id = pad_token_id
    return model


def count_parameters(model: PreTrainedModel) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())
