"""Character-level tokenizer: one token per Unicode character, vocab = sorted distinct characters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from data_service.errors import DataError
from data_service.tokenizers.base import Tokenizer


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: str, specials: Sequence[str] = ()) -> None:
        if not chars or list(chars) != sorted(set(chars)):
            raise ValueError("a char vocabulary is a non-empty string of sorted, distinct characters")
        super().__init__(specials)
        self.chars = chars
        # Code points in vocab order; sorted, so encoding is a binary search per character.
        self._points = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def train(
        cls, texts: Iterable[str], specials: Sequence[str] = (), options: Mapping[str, str] | None = None
    ) -> CharTokenizer:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        if not seen:
            raise DataError("there is no text to build a character vocabulary from")
        return cls("".join(sorted(seen)), specials)

    @property
    def base_vocab_size(self) -> int:
        return len(self.chars)

    def _encode_plain(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = np.minimum(np.searchsorted(self._points, points), len(self.chars) - 1)
        unknown = self._points[ids] != points
        if unknown.any():
            at = int(np.argmax(unknown))
            raise DataError(
                f"character {text[at]!r} at position {at} is not in the tokenizer's vocabulary "
                f"of {len(self.chars)} characters"
            )
        return ids.astype(np.int64)

    def _decode_plain(self, ids: np.ndarray) -> str:
        return self._points[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def to_dict(self) -> dict[str, Any]:
        return {"chars": self.chars, "specials": self.specials}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> CharTokenizer:
        return cls(saved["chars"], saved.get("specials", ()))
