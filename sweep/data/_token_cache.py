"""Tokenizers and the on-disk cache of tokenized datasets (private; use `sweep.data.tokenize_data`).

Layout under ``cache_dir``::

    tokenizers/bpe-<hex>/          byte-level BPE trained on a dataset's train texts
    tokenizers/pretrained-<hex>/   a pretrained tokenizer with its pad token set, saved again
    tokenized/<key>/               meta.json, {train,val}_ids.npy (int32), {train,val}_offsets.npy

Both kinds of tokenizer folder are ``save_pretrained`` output, loadable with
``AutoTokenizer.from_pretrained`` and exported next to a model. ``key`` hashes the dataset's
content hash, the tokenizer's identity (for BPE: the content hash and vocabulary size; for a local
pretrained folder: the bytes of its tokenizer files; for a hub id: the id) and ``max_length``.

Concurrency: any number of processes may build the same entry at once. Each writes into its own
``.tmp-*`` folder in the same parent and publishes it with one ``os.rename``, which is atomic on a
local POSIX file system and fails when the target exists; the loser deletes its copy and every
process then reads the published one, so all of them use the same tokenizer and the same ids.
There is no lock, so simultaneous first builds duplicate work; they never see a half-written entry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sweep.errors import DataError, ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Bump when the layout or the meaning of cached ids changes; old entries are then simply unused.
FORMAT_VERSION = 1
BPE_VERSION = 1
PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
MIN_BPE_VOCAB = 300  # 256 byte symbols + the special tokens + a few merges
_ARRAYS = ("train_ids", "train_offsets", "val_ids", "val_offsets")
# Files in a model folder that never affect tokenization (and can be gigabytes).
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx"}
_MAX_HASHED_FILE = 64 * 2**20
_STALE_SECONDS = 3600


@dataclass(frozen=True)
class CacheEntry:
    """A loaded cache entry (arrays in memory) and what the model side needs to know."""

    key: str
    train_ids: np.ndarray
    train_offsets: np.ndarray
    val_ids: np.ndarray
    val_offsets: np.ndarray
    pad_token_id: int
    vocab_size: int
    tokenizer_dir: Path


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _hash_tokenizer_files(folder: Path) -> str:
    """sha256 over the names and bytes of a model folder's top-level files, weights excluded."""
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() in _WEIGHT_SUFFIXES:
            continue
        if path.stat().st_size > _MAX_HASHED_FILE:
            continue
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def tokenizer_identity(
    pretrained: str | None, content_hash: str, bpe_vocab_size: int
) -> tuple[str, str]:
    """(identity that goes into the cache key, folder name under tokenizers/)."""
    if pretrained is None:
        ident = f"bpe-v{BPE_VERSION}:{content_hash}:{bpe_vocab_size}"
        return ident, f"bpe-{_digest(ident)[:24]}"
    local = Path(pretrained)
    if local.is_dir():
        ident = f"pretrained-v{FORMAT_VERSION}:dir:{_hash_tokenizer_files(local)}"
    else:
        # A hub id: nothing to hash without downloading, so the id itself is the identity.
        ident = f"pretrained-v{FORMAT_VERSION}:hub:{pretrained}"
    return ident, f"pretrained-{_digest(ident)[:24]}"


# ---------------------------------------------------------------------------------------------
# Atomic publication


def _sweep_stale(parent: Path) -> None:
    """Remove temp/trash folders that crashed processes left behind (older than an hour)."""
    now = time.time()
    try:
        children = list(parent.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith((".tmp-", ".trash-")):
            try:
                if now - child.stat().st_mtime > _STALE_SECONDS:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                pass


def _discard(path: Path) -> None:
    """Take a broken entry out of the way atomically (rename), then delete it."""
    trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, trash)
    except OSError:
        return  # someone else moved it already
    shutil.rmtree(trash, ignore_errors=True)


def _publish(final: Path, write: Callable[[Path], None]) -> bool:
    """Run write(tmp) in a fresh temp folder next to `final`, then rename it to `final`.

    Returns False when another process published `final` first (ours is then deleted).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; other workers may run as other users
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # rename(2) refuses to replace a non-empty directory: someone published first.
            if final.is_dir():
                return False
            raise
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _save_array(folder: Path, name: str, array: np.ndarray) -> None:
    with open(folder / f"{name}.npy", "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())  # a published entry must never turn out empty after a crash


# ---------------------------------------------------------------------------------------------
# Tokenizers


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """AutoTokenizer from a save_pretrained folder; DataError if it is missing or unreadable."""
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise DataError(f"tokenizer folder not found: {folder}")
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise DataError(f"cannot load the tokenizer in {folder}: {_one_line(exc)}") from exc


def train_bpe(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """A byte-level BPE (GPT-2 style) trained on `texts`, with a pad token and an eos token.

    Every encoded text ends with the eos token: GPT-2 classifiers read the last non-pad token,
    and a fixed last token gives them the same place to summarise every example.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    # add_prefix_space: a word at the start of a text gets the same token as in the middle.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    eos_id = tok.token_to_id(EOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A {EOS_TOKEN} $B:1 {EOS_TOKEN}:1",
        special_tokens=[(EOS_TOKEN, eos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        padding_side="right",
    )


def _load_pretrained(pretrained: str, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    except Exception as exc:  # OSError (no such model), ValueError (unknown type), ...
        raise ModelError(f"cannot load the tokenizer of {pretrained!r}: {_one_line(exc)}") from exc
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"the tokenizer of {pretrained!r} has neither a pad nor an eos token")
        # GPT-style tokenizers have no pad token; padding positions are masked, so eos will do.
        tok.pad_token = tok.eos_token
    return tok


def _ensure_tokenizer(
    folder: Path,
    pretrained: str | None,
    texts: Sequence[str],
    bpe_vocab_size: int,
    trust_remote_code: bool,
    max_length: int,
) -> PreTrainedTokenizerBase:
    """The tokenizer in `folder`, building and publishing it first if needed."""
    if not folder.is_dir():
        started = time.perf_counter()
        if pretrained is None:
            tok = train_bpe(texts, bpe_vocab_size)
            what = f"byte-level BPE ({len(tok)} tokens) on {len(texts)} texts"
        else:
            tok = _load_pretrained(pretrained, trust_remote_code)
            _check_max_length(tok, pretrained, max_length)  # before anything is written
            what = f"tokenizer of {pretrained}"
        _publish(folder, lambda tmp: tok.save_pretrained(str(tmp)))
        log.info("cached %s in %s (%.2f s)", what, folder, time.perf_counter() - started)
    # Always the published copy: a process that lost the race must use the winner's tokenizer.
    tok = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    if pretrained is not None:
        _check_max_length(tok, pretrained, max_length)
    return tok


def _check_max_length(tok: PreTrainedTokenizerBase, pretrained: str, max_length: int) -> None:
    # Longer inputs than the model has positions for would fail deep inside the model.
    limit = getattr(tok, "model_max_length", None)
    if isinstance(limit, int) and max_length > limit:
        raise DataError(
            f"max_length {max_length} exceeds the {limit} tokens the tokenizer of {pretrained!r} "
            "allows (model_max_length)"
        )


# ---------------------------------------------------------------------------------------------
# Tokenized arrays


def _encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 ids and int64 offsets of `texts`, each truncated to `max_length` tokens."""
    if not texts:
        return np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter(
        itertools.chain.from_iterable(encoded), dtype=np.int32, count=int(offsets[-1])
    )
    return ids, offsets


def _load_entry(
    entry_dir: Path, tokenizer_dir: Path, key: str, n_train: int, n_val: int
) -> CacheEntry | None:
    """The entry if it is there and sound; a broken one is discarded (None: build it)."""
    try:
        meta = json.loads((entry_dir / "meta.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return _broken(entry_dir, f"unreadable meta.json ({_one_line(exc)})")
    if not tokenizer_dir.is_dir():
        # The ids belong to that tokenizer; a rebuilt one might number tokens differently.
        return _broken(entry_dir, f"its tokenizer {tokenizer_dir} is gone")
    try:
        arrays = {name: np.load(entry_dir / f"{name}.npy") for name in _ARRAYS}
    except (OSError, ValueError) as exc:
        return _broken(entry_dir, _one_line(exc))
    problems = [
        problem
        for ok, problem in (
            (meta.get("format") == FORMAT_VERSION and meta.get("key") == key, "key or format"),
            (len(arrays["train_offsets"]) == n_train + 1, "train row count"),
            (len(arrays["val_offsets"]) == n_val + 1, "validation row count"),
            (int(arrays["train_offsets"][-1]) == len(arrays["train_ids"]), "train offsets"),
            (int(arrays["val_offsets"][-1]) == len(arrays["val_ids"]), "validation offsets"),
        )
        if not ok
    ]
    if problems:
        return _broken(entry_dir, "mismatched " + ", ".join(problems))
    return CacheEntry(
        key=key,
        pad_token_id=int(meta["pad_token_id"]),
        vocab_size=int(meta["vocab_size"]),
        tokenizer_dir=tokenizer_dir,
        **arrays,
    )


def _broken(entry_dir: Path, why: str) -> None:
    log.warning("discarding broken token cache entry %s: %s", entry_dir, why)
    _discard(entry_dir)
    return None


def get_or_build(
    *,
    train_texts: Sequence[str],
    val_texts: Sequence[str],
    content_hash: str,
    pretrained: str | None,
    max_length: int,
    cache_dir: Path,
    trust_remote_code: bool,
    bpe_vocab_size: int,
) -> CacheEntry:
    """Load the tokenized arrays from the cache, or build, publish and load them."""
    if pretrained is None and bpe_vocab_size < MIN_BPE_VOCAB:
        raise DataError(f"bpe_vocab_size {bpe_vocab_size} is below {MIN_BPE_VOCAB}")
    cache_dir = Path(cache_dir).absolute()
    ident, tok_name = tokenizer_identity(pretrained, content_hash, bpe_vocab_size)
    key = _digest(
        json.dumps(
            {
                "format": FORMAT_VERSION,
                "data": content_hash,
                "tokenizer": ident,
                "max_length": max_length,
            },
            sort_keys=True,
        )
    )[:32]
    tok_dir = cache_dir / "tokenizers" / tok_name
    entry_dir = cache_dir / "tokenized" / key
    n_train, n_val = len(train_texts), len(val_texts)
    entry = _load_entry(entry_dir, tok_dir, key, n_train, n_val)
    if entry is not None:
        log.debug("token cache hit %s", entry_dir)
        return entry

    started = time.perf_counter()
    tokenizer = _ensure_tokenizer(
        tok_dir, pretrained, train_texts, bpe_vocab_size, trust_remote_code, max_length
    )
    train_ids, train_offsets = _encode(tokenizer, train_texts, max_length)
    val_ids, val_offsets = _encode(tokenizer, val_texts, max_length)
    meta = {
        "format": FORMAT_VERSION,
        "key": key,
        "content_hash": content_hash,
        "tokenizer": ident,
        "tokenizer_dir": str(tok_dir.relative_to(cache_dir)),
        "max_length": max_length,
        "pad_token_id": int(tokenizer.pad_token_id),
        "vocab_size": len(tokenizer),
        "n_train": n_train,
        "n_val": n_val,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    arrays = {
        "train_ids": train_ids,
        "train_offsets": train_offsets,
        "val_ids": val_ids,
        "val_offsets": val_offsets,
    }

    def write(tmp: Path) -> None:
        for name, array in arrays.items():
            _save_array(tmp, name, array)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    published = _publish(entry_dir, write)
    log.info(
        "tokenized %d + %d texts in %.2f s -> %s%s",
        n_train,
        n_val,
        time.perf_counter() - started,
        entry_dir,
        "" if published else " (another process published it first; using theirs)",
    )
    entry = _load_entry(entry_dir, tok_dir, key, n_train, n_val)
    if entry is None:  # only if someone broke the entry between our rename and this read
        raise DataError(f"token cache entry {entry_dir} vanished right after it was written")
    return entry
