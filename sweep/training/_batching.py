"""Batches from flat token arrays: length-grouped, padded to a multiple of 32, built with numpy.

Why this shape of batching (the GPU table in the README's performance section): padding every
example to the dataset's longest wastes most of the compute on pad tokens, and padding each batch
exactly to its longest example makes every step a new tensor shape (kernel selection, allocator
churn: 4x slower on a GPU). So examples of similar length are put in the same batch, and each
batch is padded up to the next multiple of 32 on a GPU: few distinct shapes, and padded tokens
stay close to real tokens.

On CPU the multiple is 8: a CPU pays per token, not per new shape, and short texts make 32 costly —
SST-2's median example is 8 BPE tokens, so batches padded to 32 hold 3.0x the real tokens, padded to
8 only 1.4x (measured: 1.5-2x more samples/s for nano and micro).
"""

from __future__ import annotations

import numpy as np

PAD_MULTIPLE = 32  # on GPUs
CPU_PAD_MULTIPLE = 8
GROUP_CHUNK_BATCHES = 50  # sort by length within shuffled chunks of this many batches


def example_lengths(offsets: np.ndarray, max_length: int) -> np.ndarray:
    """Token count of each example (capped at max_length), from the flat offsets."""
    return np.minimum(np.diff(offsets), max_length).astype(np.int64)


def padded_length(longest: int, max_length: int, multiple: int = PAD_MULTIPLE) -> int:
    """`longest` rounded up to a multiple of `multiple`, capped at max_length (at least 1)."""
    rounded = -(-max(int(longest), 1) // multiple) * multiple
    return min(rounded, max_length)


def plan_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    chunk_batches: int = GROUP_CHUNK_BATCHES,
) -> list[np.ndarray]:
    """Split example indices into length-grouped batches of `batch_size`, in a random order.

    Shuffle all examples, cut them into chunks of `chunk_batches` batches, sort each chunk by length
    and cut it into batches; then shuffle the order of the batches. Sorting only within chunks keeps
    the batches' composition random from epoch to epoch, while their lengths are nearly uniform.
    Every example appears exactly once; the last batch of the last chunk may be smaller.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        # stable sort, so equal lengths keep their shuffled order
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches for evaluation: all examples sorted by length, so padding is minimal."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def split_micro(batch: np.ndarray, lengths: np.ndarray, micro_batch: int) -> list[np.ndarray]:
    """Cut one (effective) batch into micro-batches of similar length, for gradient accumulation."""
    batch = batch[np.argsort(lengths[batch], kind="stable")]
    return [batch[i : i + micro_batch] for i in range(0, len(batch), micro_batch)]


def collate(
    ids: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    index: np.ndarray,
    pad_token_id: int,
    max_length: int,
    multiple: int = PAD_MULTIPLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Gather examples `index` into a right-padded (n, L) int64 id matrix and its attention mask.

    L is the batch's longest example rounded up to a multiple of `multiple` (capped at max_length).
    One vectorised gather, no Python loop over examples.
    """
    lens = lengths[index]
    width = padded_length(int(lens.max()) if len(lens) else 1, max_length, multiple)
    cols = np.arange(width, dtype=np.int64)
    mask = cols[None, :] < lens[:, None]
    # Positions past an example's end point at its own start (clipped, for an empty last example);
    # they are replaced by the pad id anyway.
    pos = offsets[index][:, None] + np.where(mask, cols[None, :], 0)
    np.minimum(pos, max(len(ids) - 1, 0), out=pos)
    input_ids = np.where(mask, ids[pos], pad_token_id).astype(np.int64, copy=False)
    return input_ids, mask.astype(np.int64)
