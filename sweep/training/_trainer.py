"""One attempt at a fine-tune: the model, its optimizer and schedule, and the steps that use
them (a training step with gradient accumulation, an evaluation, a checkpoint)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR

from sweep.config import ModelConfig
from sweep.training._batching import (
    CPU_PAD_MULTIPLE,
    PAD_MULTIPLE,
    collate,
    eval_batches,
    example_lengths,
    plan_batches,
    split_micro,
)
from sweep.training._checkpoint import rng_state, save_checkpoint
from sweep.training._device import autocast, seed_everything
from sweep.training.models import build_model
from sweep.training.types import EpochMetrics, TrialParams

if TYPE_CHECKING:
    from sweep.data import TokenizedData

NAN_CHECK_EVERY = 50  # steps between loss checks on CUDA: each check waits for the GPU
GRAD_CLIP = 1.0  # max global gradient norm, as nanoGPT and HF Trainer use
EVAL_MICRO_FACTOR = 4  # no activations kept for backward in eval: larger micro-batches fit
MAX_EVAL_MICRO = 1024


@dataclass
class Attempt:
    """One try at the whole trial with a fixed micro-batch (an out-of-memory halves it)."""

    micro_batch: int
    halvings: int = 0
    reported: int = 0  # the last epoch given to on_epoch: a retry after an OOM does not repeat it


@dataclass
class Trainer:
    """One attempt's model, optimizer and schedule, and the steps that use them."""

    params: TrialParams
    data: TokenizedData
    dev: torch.device
    attempt: Attempt
    fingerprint: str
    checkpoint_dir: Path | None
    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    use_mask: bool
    train_lengths: np.ndarray = field(init=False)
    val_lengths: np.ndarray = field(init=False)
    pad_multiple: int = field(init=False)
    step_seconds: float = 0.0
    samples_seen: int = 0
    tokens_seen: int = 0

    def __post_init__(self) -> None:
        self.train_lengths = example_lengths(self.data.train_offsets, self.data.max_length)
        self.val_lengths = example_lengths(self.data.val_offsets, self.data.max_length)
        self.pad_multiple = CPU_PAD_MULTIPLE if self.dev.type == "cpu" else PAD_MULTIPLE

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """A host array on the device; pinned on CUDA so the copy is asynchronous."""
        tensor = torch.from_numpy(array)
        if self.dev.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.dev, non_blocking=True)

    def checkpoint(self, history: list[EpochMetrics], step: int, loss_sum: float) -> None:
        """Save the state after `step` steps of the epoch after the last finished one (0: none)."""
        if self.checkpoint_dir is None:
            return
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "history": [dataclasses.asdict(m) for m in history],
        }
        extra: dict[str, Any] = {
            "micro_batch": self.attempt.micro_batch,
            "micro_batch_halvings": self.attempt.halvings,
        }
        if step:
            state["loss_sum"] = loss_sum
            extra["step"] = step
        save_checkpoint(
            self.checkpoint_dir,
            model=self.model,
            epoch=len(history),
            step=step,
            state=state,
            fingerprint=self.fingerprint,
            extra=extra,
        )

    def train_epoch(
        self,
        epoch: int,
        history: list[EpochMetrics],
        resume: tuple[int, float],
        should_stop: Callable[[], bool] | None,
    ) -> tuple[torch.Tensor, bool]:
        """Train one epoch from its step `resume[0]` on; returns (the summed loss, preempted).

        The batch order depends on (seed, epoch) only, so a resumed run sees the same batches.
        """
        self.model.train()
        batches = plan_batches(
            self.train_lengths,
            self.params.batch_size,
            np.random.default_rng([self.params.seed, epoch]),
        )
        skip, start_loss = resume
        # Summed on the device: no sync per step. A mid-epoch resume starts from the saved sum
        # (a float32 value round-trips exactly through a Python float): the same epoch loss.
        loss_sum = torch.full((), start_loss, dtype=torch.float32, device=self.dev)
        # A host sync costs nothing on CPU, so check every step there; on CUDA only now and then.
        nan_check_every = NAN_CHECK_EVERY if self.dev.type == "cuda" else 1
        for step, batch in enumerate(batches, start=1):
            if step <= skip:
                continue  # done before the checkpoint this run resumed from
            loss_sum += self._step(batch)
            if step % nan_check_every == 0 and not torch.isfinite(loss_sum):
                break
            if should_stop is not None and step < len(batches) and should_stop():
                self.checkpoint(history, step, loss_sum.item())
                return loss_sum, True
        return loss_sum, False

    def _step(self, batch: np.ndarray) -> torch.Tensor:
        """One optimizer step on an effective batch, micro-batch by micro-batch; its summed loss."""
        total = torch.zeros((), dtype=torch.float32, device=self.dev)
        for micro in split_micro(batch, self.train_lengths, self.attempt.micro_batch):
            ids, mask = self._collate(self.data.train_ids, self.data.train_offsets, micro, True)
            labels = self.to_device(self.data.train_labels[micro].astype(np.int64, copy=False))
            with autocast(self.dev):
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            # Sum over the micro-batch divided by the whole batch's size: the accumulated
            # gradient is the batch mean whatever the micro-batch, so an OOM halving changes
            # nothing but speed.
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            (loss / len(batch)).backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.samples_seen += len(batch)
        self.tokens_seen += int(self.train_lengths[batch].sum())
        return total

    def _collate(
        self, ids: np.ndarray, offsets: np.ndarray, index: np.ndarray, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        lengths = self.train_lengths if train else self.val_lengths
        batch_ids, mask = collate(
            ids,
            offsets,
            lengths,
            index,
            self.data.pad_token_id,
            self.data.max_length,
            self.pad_multiple,
        )
        return self.to_device(batch_ids), self.to_device(mask) if self.use_mask else None

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """Mean validation loss and accuracy (batches sorted by length: the least padding)."""
        self.model.eval()
        micro = min(self.attempt.micro_batch * EVAL_MICRO_FACTOR, MAX_EVAL_MICRO)
        loss_sum = torch.zeros((), device=self.dev)
        correct = torch.zeros((), device=self.dev, dtype=torch.int64)
        for index in eval_batches(self.val_lengths, micro):
            ids, mask = self._collate(self.data.val_ids, self.data.val_offsets, index, False)
            labels = self.to_device(self.data.val_labels[index].astype(np.int64, copy=False))
            with autocast(self.dev):
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=-1) == labels).sum()
        n = max(1, len(self.data.val_labels))
        return loss_sum.item() / n, correct.item() / n


def make_trainer(
    params: TrialParams,
    data: TokenizedData,
    model_spec: ModelConfig,
    dev: torch.device,
    attempt: Attempt,
    checkpoint_dir: Path | None,
) -> Trainer:
    """A fresh model, its optimizer and its schedule; the seed fixes the init and dropout."""
    seed_everything(params.seed)
    model = build_model(
        model_spec,
        num_labels=len(data.label_names),
        vocab_size=data.vocab_size,
        pad_token_id=data.pad_token_id,
        max_length=data.max_length,
        label_names=data.label_names,
    ).to(dev)
    optimizer = _make_optimizer(model, params)
    return Trainer(
        params=params,
        data=data,
        dev=dev,
        attempt=attempt,
        fingerprint=fingerprint(params, data, model_spec),
        checkpoint_dir=checkpoint_dir,
        model=model,
        optimizer=optimizer,
        scheduler=LambdaLR(optimizer, _lr_factor(params, len(data.train_labels))),
        use_mask=_needs_attention_mask(model),
    )


def _lr_factor(params: TrialParams, n_train: int) -> Callable[[int], float]:
    """Linear warm-up from 0 to the learning rate, then linear decay to 0 at the last step."""
    total_steps = -(-n_train // params.batch_size) * params.epochs
    warmup_steps = int(params.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _make_optimizer(model: torch.nn.Module, params: TrialParams) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only, fused where torch supports it."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # Biases and LayerNorm weights are 1-d; pulling them to 0 only hurts (nanoGPT's rule).
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": params.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # One fused kernel per step instead of a dozen per parameter; measured 1.12-1.14x on CPU too.
    try:
        return torch.optim.AdamW(groups, lr=params.learning_rate, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=params.learning_rate)


def _needs_attention_mask(model: torch.nn.Module) -> bool:
    """Whether the model must see the padding mask.

    GPT-2 attends causally and classifies from the last real token; with right padding no real token
    ever attends to a pad, so the mask changes nothing — and without it sdpa takes its fastest
    (is_causal) path and transformers builds no 4-d mask (whose checks sync with the GPU).
    """
    if getattr(model.config, "model_type", None) != "gpt2":
        return True
    # Without a mask, GPT-2 scans input_ids for pad ids on every forward to warn about them: a
    # device-to-host copy, i.e. a sync per step. The warning does not apply to right padding.
    model.base_model.warn_if_padding_and_no_attention_mask = lambda *args, **kwargs: None
    return False


def fingerprint(params: TrialParams, data: TokenizedData, model_spec: ModelConfig) -> str:
    """What a checkpoint must match to be resumed: the same trial on the same data."""
    key = json.dumps(
        {
            "params": dataclasses.asdict(params),
            "model": model_spec.describe(),
            "data": data.cache_key,
            "n_train": len(data.train_labels),
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]
