"""Character-level tokenizer: one token per Unicode character, vocab = sorted distinct characters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from data_service.errors import DataError


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str) -> None:
        if not chars or list(chars) != sorted(set(chars)):
            raise ValueError("a char vocabulary is a non-empty string of sorted, distinct characters")
        self.chars = chars
        # Code points in vocab order; sorted, so encoding is a binary search per character.
        self._points = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) of ``text``; a character outside the vocabulary is an error."""
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = np.minimum(np.searchsorted(self._points, points), self.vocab_size - 1)
        unknown = self._points[ids] != points
        if unknown.any():
            at = int(np.argmax(unknown))
            raise DataError(
                f"character {text[at]!r} at position {at} is not in the tokenizer's vocabulary "
                f"of {self.vocab_size} characters"
            )
        return ids.astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids``; an id outside [0, vocab_size) is an error."""
        ids = np.asarray(ids, dtype=np.int64)
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            at = int(np.argmax(bad))
            raise DataError(f"token id {int(ids[at])} at position {at} is outside [0, {self.vocab_size})")
        return self._points[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def to_dict(self) -> dict[str, Any]:
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> CharTokenizer:
        return cls(saved["chars"])
