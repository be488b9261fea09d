"""Training throughput: sweep's loop vs a seed-style loop vs HF Trainer. Prints one JSON line.

All three train the same model (same size, same init seed) on the same rows, batch 32, one epoch, in
this one process, and each is timed around its training epoch only (model building and tokenizing
excluded; for ours, FineTuneResult.samples_per_s, which excludes its per-epoch evaluation):
  ours     sweep.training.fine_tune: length-grouped batches padded to a multiple of 32 (8 on CPU),
           fused AdamW; on CUDA bf16 autocast + TF32 and no host syncs in a step
  seed     what a first version looks like: tokenizer(texts, padding=True) pads every example to
           the longest in the set, shuffled DataLoader, fp32 (torch's default precision, no TF32),
           plain torch.optim.AdamW, loss.item() every step
  trainer  transformers.Trainer with its defaults + DataCollatorWithPadding (bf16=True on CUDA)

    python benchmarks/throughput.py --data ../shared/data/sst2 --size nano            # CPU
    python benchmarks/throughput.py --data ../shared/data/sst2 --size small --device cuda
    python benchmarks/throughput.py --data ../shared/data/sst2 --size small --device cuda \\
        --oom-limit-gb 3        # real CUDA OOM path: caps this process's GPU memory, trains ours
                                # only at --oom-batch 256 and reports the micro-batch halvings

On CUDA each loop first runs untimed on 1024 rows (lazy kernel loading, per-shape algorithm choice),
and two extra short runs of ours under torch.cuda.set_sync_debug_mode("warn") count the host syncs
per training step (`ours_syncs_per_step`; the NaN check is one per 50 steps).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import platform
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import transformers

from sweep.config import PRESETS, DataConfig, ModelConfig
from sweep.training import TrialParams, build_model, configure_cpu_threads, fine_tune

log = logging.getLogger("throughput")

BATCH = 32
LEARNING_RATE = 5e-4


@dataclass
class Bench:
    """What the three loops share: the tokenized data, the raw texts and labels, the tokenizer."""

    data: Any  # TokenizedData
    train_texts: list[str]
    train_labels: np.ndarray
    tokenizer: Any  # PreTrainedTokenizerBase


def load_bench(data_dir: Path, max_length: int, limit_train: int | None, cache_dir: Path) -> Bench:
    """Load and tokenize through sweep.data (the BPE the sweep itself would train and cache)."""
    try:
        from sweep.data import load_text_data, load_tokenizer, tokenize_data
    except ImportError:  # sweep.data not written yet: the same steps by hand
        return _load_bench_by_hand(data_dir, max_length, limit_train, cache_dir)

    text = load_text_data(
        DataConfig(
            train=data_dir / "train.csv",
            validation=data_dir / "validation.csv",
            max_length=max_length,
            limit_train=limit_train,
        )
    )
    data = tokenize_data(text, pretrained=None, max_length=max_length, cache_dir=cache_dir)
    return Bench(
        data, list(text.train_texts), text.train_labels, load_tokenizer(data.tokenizer_dir)
    )


def _load_bench_by_hand(
    data_dir: Path, max_length: int, limit_train: int | None, cache_dir: Path
) -> Bench:
    import pandas as pd
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    frames = [pd.read_csv(data_dir / f"{split}.csv") for split in ("train", "validation")]
    train, val = frames
    if limit_train is not None and limit_train < len(train):
        train = train.sample(n=limit_train, random_state=0)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        train["text"].astype(str).tolist(),
        trainers.BpeTrainer(
            vocab_size=8192,
            special_tokens=["<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>")
    tokenizer_dir = cache_dir / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)

    def flat(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [enc.ids[:max_length] for enc in bpe.encode_batch(texts)]
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
        return np.concatenate(ids).astype(np.int32), offsets

    train_texts = train["text"].astype(str).tolist()
    train_ids, train_offsets = flat(train_texts)
    val_ids, val_offsets = flat(val["text"].astype(str).tolist())
    data = SimpleNamespace(
        train_ids=train_ids,
        train_offsets=train_offsets,
        train_labels=train["label"].to_numpy(np.int64),
        val_ids=val_ids,
        val_offsets=val_offsets,
        val_labels=val["label"].to_numpy(np.int64),
        label_names=("0", "1"),
        pad_token_id=bpe.token_to_id("<pad>"),
        vocab_size=bpe.get_vocab_size(),
        max_length=max_length,
        tokenizer_dir=tokenizer_dir,
        cache_key=f"by-hand-{limit_train}-{max_length}",
    )
    return Bench(data, train_texts, data.train_labels, tokenizer)


def seed_loop(bench: Bench, spec: Any, dev: torch.device, max_length: int) -> float:
    """A typical first fine-tune loop; returns samples/s of its epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    enc = bench.tokenizer(
        bench.train_texts,
        padding=True,  # to the longest example in the whole set
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    dataset = TensorDataset(
        enc["input_ids"], enc["attention_mask"], torch.tensor(bench.train_labels)
    )
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
    torch.set_float32_matmul_precision("highest")  # torch's default: ours turned TF32 on
    model = new_model(bench, spec, max_length).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()
    synchronize(dev)
    start = time.perf_counter()
    total = 0.0
    for input_ids, attention_mask, labels in loader:
        out = model(
            input_ids=input_ids.to(dev),
            attention_mask=attention_mask.to(dev),
            labels=labels.to(dev),
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total += out.loss.item()
    synchronize(dev)
    seconds = time.perf_counter() - start
    log.info(
        "seed: padded width %d, mean loss %.4f", enc["input_ids"].shape[1], total / len(loader)
    )
    return len(dataset) / seconds


def trainer_loop(bench: Bench, spec: Any, dev: torch.device, max_length: int) -> float:
    """transformers.Trainer with its defaults; returns samples/s of its epoch."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    enc = bench.tokenizer(bench.train_texts, truncation=True, max_length=max_length)
    rows = [
        {"input_ids": ids, "labels": int(label)}
        for ids, label in zip(enc["input_ids"], bench.train_labels, strict=True)
    ]
    model = new_model(bench, spec, max_length)
    torch.set_float32_matmul_precision("highest")  # torch's default (Trainer's tf32=None keeps it)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            num_train_epochs=1,
            learning_rate=LEARNING_RATE,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            bf16=dev.type == "cuda",  # as DESIGN.md's table measured it
            use_cpu=dev.type == "cpu",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=DataCollatorWithPadding(bench.tokenizer),
        )
        # Trainer prints its log dicts; stdout is for our one JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            synchronize(dev)
            start = time.perf_counter()
            trainer.train()
            synchronize(dev)
    return len(rows) / (time.perf_counter() - start)


def ours(
    bench: Bench, spec: Any, dev: torch.device, *, batch: int = BATCH, **kwargs: Any
) -> dict[str, Any]:
    params = TrialParams(learning_rate=LEARNING_RATE, batch_size=batch, epochs=1, model_size="x")
    result = fine_tune(params, bench.data, spec, device=str(dev), **kwargs)
    return {
        "samples_per_s": result.samples_per_s,
        "tokens_per_s": result.tokens_per_s,
        "val_loss": result.best_val_loss,
        "micro_batch": result.micro_batch,
        "halvings": result.micro_batch_halvings,
        "n_params": result.n_params,
        "peak_memory_mb": result.peak_memory_mb,
        "end_reason": result.end_reason,
    }


def head(bench: Bench, n: int) -> Bench:
    """The first n training rows of `bench` (validation unchanged)."""
    data = bench.data
    n = min(n, len(data.train_labels))
    rows = {
        "train_ids": data.train_ids[: data.train_offsets[n]],
        "train_offsets": data.train_offsets[: n + 1],
        "train_labels": data.train_labels[:n],
    }
    if dataclasses.is_dataclass(data):
        short = dataclasses.replace(data, **rows)
    else:
        short = SimpleNamespace(**{**vars(data), **rows})
    return Bench(short, bench.train_texts[:n], bench.train_labels[:n], bench.tokenizer)


def count_syncs(bench: Bench, spec: Any, dev: torch.device, rows: int = 1600) -> float:
    """Host syncs per training step of ours, counted by CUDA's sync debug mode.

    Two runs, of `rows` and 2 * `rows` rows: the difference holds only training steps (building
    the model copies every weight to the GPU, a sync each; the evaluation syncs once per epoch).
    """
    params = TrialParams(learning_rate=LEARNING_RATE, batch_size=BATCH, epochs=1, model_size="x")
    counts = []
    for n in (rows, 2 * rows):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fine_tune(params, head(bench, n).data, spec, device=str(dev))
            finally:
                torch.cuda.set_sync_debug_mode(0)
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    return (counts[1] - counts[0]) / (math.ceil(2 * rows / BATCH) - math.ceil(rows / BATCH))


def new_model(bench: Bench, spec: Any, max_length: int) -> torch.nn.Module:
    torch.manual_seed(0)
    d = bench.data
    return build_model(
        spec,
        num_labels=len(d.label_names),
        vocab_size=d.vocab_size,
        pad_token_id=d.pad_token_id,
        max_length=max_length,
        label_names=d.label_names,
    )


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/validation.csv")
    parser.add_argument("--size", default="nano", choices=sorted(PRESETS))
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument(
        "--limit-train", type=int, default=None, help="default 4000 CPU, 16000 CUDA"
    )
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--loops", default="ours,seed,trainer", help="comma-separated subset")
    parser.add_argument("--cache-dir", type=Path, default=None, help="tokenization cache")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="rounds of all loops, interleaved; best of each reported (default 3 CPU, 1 CUDA)",
    )
    parser.add_argument("--oom-limit-gb", type=float, default=None, help="CUDA: cap GPU memory")
    parser.add_argument("--oom-batch", type=int, default=256, help="effective batch of the OOM run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    transformers.logging.set_verbosity_error()

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
        torch.ones(1, device=dev).matmul(torch.ones(1, device=dev))  # context + cuBLAS up front
    threads = configure_cpu_threads()
    limit = args.limit_train or (16000 if dev.type == "cuda" else 4000)
    with contextlib.ExitStack() as stack:
        cache = args.cache_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        bench = load_bench(args.data, args.max_length, limit, cache)
        spec = ModelConfig(preset=args.size)
        out: dict[str, Any] = {
            "benchmark": "throughput",
            "size": args.size,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "threads": threads,
            "rows": len(bench.data.train_labels),
            "max_length": args.max_length,
            "batch": BATCH,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        }
        if args.oom_limit_gb is not None:
            if dev.type != "cuda":
                parser.error("--oom-limit-gb needs --device cuda")
            total = torch.cuda.get_device_properties(dev).total_memory
            torch.cuda.set_per_process_memory_fraction(args.oom_limit_gb * 2**30 / total, dev)
            run = ours(bench, spec, dev, batch=args.oom_batch)
            out.update({"oom_limit_gb": args.oom_limit_gb, "oom_batch": args.oom_batch})
            out.update({f"ours_{k}": v for k, v in run.items()})
            print(json.dumps(out))
            return

        # Rounds interleave the loops, and the best round of each counts: on a shared machine a
        # neighbour's burst slows whichever loop it lands on, never speeds one up.
        loops = args.loops.split(",")
        if dev.type == "cuda":
            # Each loop once on a few rows first, untimed: CUDA loads kernels lazily and picks
            # matmul algorithms per shape on first use, which would count against the loop
            # that happens to run first.
            warm = head(bench, 1024)
            if "ours" in loops:
                ours(warm, spec, dev)
            if "seed" in loops:
                seed_loop(warm, spec, dev, args.max_length)
            if "trainer" in loops:
                trainer_loop(warm, spec, dev, args.max_length)
        rounds: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.repeat or (1 if dev.type == "cuda" else 3)):
            if "ours" in loops:
                run = ours(bench, spec, dev)
                rounds["ours"].append(run.pop("samples_per_s"))
                out.update({f"ours_{k}": v for k, v in run.items()})
            if "seed" in loops:
                rounds["seed"].append(seed_loop(bench, spec, dev, args.max_length))
            if "trainer" in loops:
                rounds["trainer"].append(trainer_loop(bench, spec, dev, args.max_length))
        keys = {"ours": "samples_per_s", "seed": "seed_loop_samples_per_s"}
        for name, values in rounds.items():
            key = keys.get(name, f"{name}_samples_per_s")
            out[key] = round(max(values), 1)
            out[f"{name}_rounds"] = [round(v, 1) for v in values]
        for name in ("seed_loop", "trainer"):
            if "samples_per_s" in out and f"{name}_samples_per_s" in out:
                ratio = out["samples_per_s"] / out[f"{name}_samples_per_s"]
                out[f"ratio_vs_{name.removesuffix('_loop')}"] = round(ratio, 3)
        if dev.type == "cuda" and "ours" in loops:
            out["ours_syncs_per_step"] = count_syncs(bench, spec, dev)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
