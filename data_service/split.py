"""The train/val split: deterministic, and leak-free because it is decided per distinct key.

Examples are grouped by a key (the text of a document piece, the prompt of a pair), groups are taken
in the order of their hash, and the first ones go to val until they hold ``fraction`` of the text.
So exact duplicates (and pairs sharing a prompt) always land on one side, and the same data always
splits the same way.
"""

from __future__ import annotations

import hashlib

import numpy as np


def key_hash(text: str) -> int:
    """A stable 64-bit hash (Python's own ``hash`` changes between processes)."""
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


def choose_val(keys: np.ndarray, sizes: np.ndarray, fraction: float) -> np.ndarray:
    """A boolean per example: True where it goes to val. At least one group stays in train."""
    if len(keys) == 0 or fraction <= 0:
        return np.zeros(len(keys), dtype=bool)
    groups, inverse = np.unique(keys, return_inverse=True)
    group_sizes = np.bincount(inverse, weights=sizes.astype(np.float64), minlength=len(groups))
    cumulative = np.cumsum(group_sizes)
    target = fraction * cumulative[-1]
    # The number of groups whose total comes closest to the target, but never all of them.
    n = int(np.searchsorted(cumulative, target))
    if n < len(groups) and (n == 0 or cumulative[n] - target < target - cumulative[n - 1]):
        n += 1
    n = min(max(n, 1), len(groups) - 1)
    return (np.arange(len(groups)) < n)[inverse]
