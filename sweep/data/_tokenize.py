"""Token ids of a dataset for one tokenizer: `tokenize_data` (from the on-disk cache when it is
there, see `_token_cache`) and `load_tokenizer`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sweep.config import MIN_MAX_LENGTH
from sweep.data._load import TextData
from sweep.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True, eq=False)
class TokenizedData:
    """Token ids of every example, flat with offsets: example i is ids[off[i]:off[i+1]]."""

    train_ids: np.ndarray
    train_offsets: np.ndarray
    train_labels: np.ndarray
    val_ids: np.ndarray
    val_offsets: np.ndarray
    val_labels: np.ndarray
    label_names: tuple[str, ...]
    pad_token_id: int
    vocab_size: int
    max_length: int
    tokenizer_dir: Path
    cache_key: str


def load_tokenizer(
    tokenizer_dir: Path, *, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """Load a tokenizer saved with save_pretrained (e.g. `TokenizedData.tokenizer_dir`)."""
    from sweep.data import _token_cache

    return _token_cache.load_tokenizer(Path(tokenizer_dir), trust_remote_code=trust_remote_code)


def tokenize_data(
    data: TextData,
    *,
    pretrained: str | None,
    max_length: int,
    cache_dir: Path,
    trust_remote_code: bool = False,
    bpe_vocab_size: int = 8192,
) -> TokenizedData:
    """Token ids of `data`, from the cache under `cache_dir` or built (and cached) now.

    ``pretrained=None`` trains a byte-level BPE on the train texts (cached by content hash);
    otherwise the tokenizer of that local directory or hub id is used, with pad = eos when it
    has no pad token. Texts are truncated to `max_length` tokens. The arrays are cached keyed by
    (content hash, tokenizer identity, max_length) and published with an atomic rename, so any
    number of processes may call this at once. Raises DataError for max_length < 8 and
    ModelError when the pretrained tokenizer cannot be loaded; nothing is written then.
    """
    from sweep.data import _token_cache

    if max_length < MIN_MAX_LENGTH:
        raise DataError(f"max_length {max_length} is below {MIN_MAX_LENGTH}")
    entry = _token_cache.get_or_build(
        train_texts=data.train_texts,
        val_texts=data.val_texts,
        content_hash=data.content_hash,
        pretrained=pretrained,
        max_length=max_length,
        cache_dir=Path(cache_dir),
        trust_remote_code=trust_remote_code,
        bpe_vocab_size=bpe_vocab_size,
    )
    return TokenizedData(
        train_ids=entry.train_ids,
        train_offsets=entry.train_offsets,
        train_labels=np.asarray(data.train_labels, dtype=np.int64),
        val_ids=entry.val_ids,
        val_offsets=entry.val_offsets,
        val_labels=np.asarray(data.val_labels, dtype=np.int64),
        label_names=data.label_names,
        pad_token_id=entry.pad_token_id,
        vocab_size=entry.vocab_size,
        max_length=max_length,
        tokenizer_dir=entry.tokenizer_dir,
        cache_key=entry.key,
    )
