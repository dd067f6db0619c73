"""Batches as a pure function of (seed, split, step, rank): resumable at any step, sharded across ranks.

Each step draws ``world_size * batch_size`` window starts from a generator seeded by (seed, split, step)
alone, and rank r takes slice r. So ranks never share a draw, their batches together are the batch one
rank would get with ``batch_size * world_size``, and step k is the same whether a run starts at 0 or k.
"""

from __future__ import annotations

import zlib

import numpy as np


def step_rng(seed: int, split: str, step: int) -> np.random.Generator:
    # SeedSequence takes non-negative integers: fold a negative seed into uint64.
    return np.random.default_rng([seed % 2**64, zlib.crc32(split.encode()), step])


def get_batch(
    tokens: np.ndarray,
    *,
    block_size: int,
    batch_size: int,
    seed: int,
    split: str,
    step: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each int64 [batch_size, block_size], with y the next token after each x position.

    A window needs block_size + 1 tokens, so ``tokens`` must hold more than block_size of them.
    """
    starts = step_rng(seed, split, step).integers(0, len(tokens) - block_size, size=world_size * batch_size)
    mine = starts[rank * batch_size : (rank + 1) * batch_size]
    windows = tokens[mine[:, None] + np.arange(block_size + 1)].astype(np.int64)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
