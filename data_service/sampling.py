"""Batches as a pure function of (seed, split, step, rank): resumable at any step, sharded across ranks.

Stream packing: each step draws ``world_size * batch_size`` window starts from a generator seeded by
(seed, split, step) alone, and rank r takes slice r. So ranks never share a draw, their batches
together are the batch one rank would get with ``batch_size * world_size``, and step k is the same
whether a run starts at 0 or k.

Pairs packing: examples are dealt in epochs, each a permutation seeded by (seed, split, epoch). The
global row counter ``(step * world_size + rank) * batch_size + i`` picks a place in that deal, so no
example repeats within an epoch and ranks take disjoint rows.
"""

from __future__ import annotations

import zlib

import numpy as np


def step_rng(seed: int, split: str, step: int) -> np.random.Generator:
    # SeedSequence takes non-negative integers: fold a negative seed into uint64.
    return np.random.default_rng([seed % 2**64, zlib.crc32(split.encode()), step])


def get_windows(
    tokens: np.ndarray,
    *,
    block_size: int,
    batch_size: int,
    seed: int,
    split: str,
    step: int,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Token windows [batch_size, block_size + 1] in the tokens' own dtype: x is each but its last
    token, y each but its first.

    A window needs block_size + 1 tokens, so ``tokens`` must hold more than block_size of them.
    """
    starts = step_rng(seed, split, step).integers(0, len(tokens) - block_size, size=world_size * batch_size)
    return windows_at(tokens, starts[rank * batch_size : (rank + 1) * batch_size], block_size)


def windows_at(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> np.ndarray:
    """The windows [len(starts), block_size + 1] that begin at ``starts`` (each below
    ``len(tokens) - block_size``), in the tokens' own dtype: what a batch draws, and what GetRows shows."""
    # Rows of a sliding-window view: each window is copied whole, not gathered token by token.
    stride = tokens.strides[0]
    windows = np.lib.stride_tricks.as_strided(
        tokens, shape=(len(tokens) - block_size, block_size + 1), strides=(stride, stride), writeable=False
    )
    return windows[starts]


def get_batch(
    tokens: np.ndarray, mask: np.ndarray | None = None, **kw: int | str
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each int64 [batch_size, block_size], with y the next token after each x position, and
    -1 where ``mask`` (one flag per token, if given) says the target takes no loss."""
    windows = get_windows(tokens, **kw).astype(np.int64)  # type: ignore[arg-type]
    y = windows[:, 1:]
    if mask is not None:
        y = ignore_untrained(y, get_windows(mask, **kw)[:, 1:])  # type: ignore[arg-type]
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(y)


def ignore_untrained(targets: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """The targets as int64, -1 (the ignore index) where ``trained`` is 0. Windows drawn from a mask with
    the same arguments as from the tokens line up with them (the draw depends on the arguments alone)."""
    out = targets.astype(np.int64)
    out[trained == 0] = -1
    return out


class EpochOrder:
    """Which example sits at each place of the endless deal: epoch by epoch, each shuffled anew."""

    def __init__(self, num_examples: int, seed: int, split: str) -> None:
        self.n = num_examples
        self.seed = seed
        self.split = split
        self._epoch = -1
        self._perm = np.zeros(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            # Far above any real step, so these seeds never coincide with a window draw.
            self._perm = step_rng(self.seed, self.split, 2**62 + epoch).permutation(self.n)
            self._epoch = epoch
        return self._perm

    def take(self, start: int, count: int) -> np.ndarray:
        """Example ids at places start .. start+count of the deal."""
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            epoch, at = divmod(start + done, self.n)
            n = min(count - done, self.n - at)
            out[done : done + n] = self.permutation(epoch)[at : at + n]
            done += n
        return out


def pair_batch(
    tokens: np.ndarray,
    rows: np.ndarray,
    order: EpochOrder,
    *,
    block_size: int,
    batch_size: int,
    step: int,
    pad: int,
    rank: int = 0,
    world_size: int = 1,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 [batch_size, block_size]: the examples this step deals to this rank, as
    ``pair_rows`` lays them out."""
    first = (step * world_size + rank) * batch_size
    examples = order.take(first, batch_size)
    return pair_rows(tokens, rows, examples, block_size=block_size, pad=pad, mask=mask)


def pair_rows(
    tokens: np.ndarray,
    rows: np.ndarray,
    examples: np.ndarray,
    *,
    block_size: int,
    pad: int,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 [len(examples), block_size]: one example per row, prompt then completion, padded with
    ``pad``. y is -1 on the prompt and the padding, so loss is only taken on the completion, and where
    ``mask`` (one flag per token, if given) is 0. An example longer than block_size + 1 tokens is cut
    to fit."""
    x = np.full((len(examples), block_size), pad, dtype=np.int64)
    y = np.full((len(examples), block_size), -1, dtype=np.int64)
    for i, example in enumerate(examples):
        start, prompt_len, total = (int(v) for v in rows[example])
        n = min(total, block_size + 1)
        seq = tokens[start : start + n]
        x[i, : n - 1] = seq[:-1]
        y[i, : n - 1] = seq[1:]
        y[i, : max(prompt_len - 1, 0)] = -1
        if mask is not None:
            y[i, : n - 1][mask[start + 1 : start + n] == 0] = -1
    return x, y
