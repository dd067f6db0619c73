"""Episodic memory across examples: with ``memory_examples`` K, each pairs row starts with the K examples
before it in its document (a deck: the same ``source`` and ``doc``), oldest first, each written as its
own row would be (prompt, completion, end token), read but never trained on.

Only examples of the row's own split are remembered, so a val row never sees a train answer and a train
row never sees a val one; the first rows of a document have fewer than K before them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from data_service.errors import DataError
from data_service.modules.base import Option, Pair

MAX_MEMORY_EXAMPLES = 64
OPTION = Option(
    "memory_examples",
    "Pairs packing: put the previous K examples of the same document (deck), same split, before each "
    "prompt, untrained; 0: off.",
    "0",
)


def canonical_memory(opts: dict[str, str]) -> None:
    """Normalise ``memory_examples`` in ``opts`` in place; drop it when off, so existing ids stay."""
    try:
        k = int(opts[OPTION.name])
    except ValueError:
        k = -1
    if not 0 <= k <= MAX_MEMORY_EXAMPLES:
        raise DataError(
            f"option memory_examples must be an integer from 0 to {MAX_MEMORY_EXAMPLES}, "
            f"got {opts[OPTION.name]!r}"
        )
    if k:
        opts[OPTION.name] = str(k)
    else:
        del opts[OPTION.name]


def check_packing(opts: Mapping[str, str], packing: str) -> None:
    if OPTION.name in opts and packing != "pairs":
        raise DataError(
            f"option memory_examples needs packing 'pairs' (prompt/completion rows), not {packing!r}"
        )


class Memory:
    """The last K encoded examples of each (source, doc, split), to put before the next one's prompt."""

    def __init__(self, k: int, end: np.ndarray) -> None:
        self.k = k
        self.end = end
        self.recent: dict[tuple[str, str, bool], deque[np.ndarray]] = {}
        self.rows_with_memory = {"train": 0, "val": 0}

    def before(self, ex: Pair, val: bool, ids: list[np.ndarray]) -> np.ndarray:
        """The tokens of the examples before ``ex`` in its document and split; then ``ex`` (its prompt and
        completion ``ids``) is remembered for the ones after it."""
        recent = self.recent.setdefault((ex.source, ex.doc, bool(val)), deque(maxlen=self.k))
        past = np.concatenate(list(recent)) if recent else np.zeros(0, dtype=np.int64)
        self.rows_with_memory["val" if val else "train"] += bool(recent)
        recent.append(np.concatenate([*ids, self.end]).astype(np.int64))
        return past

    def stats(self) -> dict[str, object]:
        """For the dataset's statistics: K, and how many rows of each split had examples before them."""
        return {"examples_before": self.k, "rows_with_memory": dict(self.rows_with_memory)}
