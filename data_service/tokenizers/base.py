"""What every tokenizer offers, and the special tokens (e.g. the end of a pair) they all handle alike.

Special tokens take the ids right after the learned vocabulary. ``encode`` recognises their text, so
``decode`` then ``encode`` round-trips, specials included.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from data_service.errors import DataError


class Tokenizer(ABC):
    kind: ClassVar[str]
    # Options this kind takes (name → default), on top of the module's.
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, specials: Sequence[str]) -> None:
        self.specials = list(specials)
        self._special_re = re.compile("|".join(map(re.escape, self.specials))) if self.specials else None

    @classmethod
    @abstractmethod
    def train(
        cls, texts: Iterable[str], specials: Sequence[str] = (), options: Mapping[str, str] | None = None
    ) -> Tokenizer:
        """A tokenizer fitted to ``texts`` (streamed once), with ``specials`` appended to its vocabulary."""

    @property
    def vocab_size(self) -> int:
        return self.base_vocab_size + len(self.specials)

    @property
    @abstractmethod
    def base_vocab_size(self) -> int:
        """Ids below this are learned tokens; specials follow."""

    @abstractmethod
    def _encode_plain(self, text: str) -> np.ndarray: ...

    @abstractmethod
    def _decode_plain(self, ids: np.ndarray) -> str: ...

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    @abstractmethod
    def from_dict(cls, saved: dict[str, Any]) -> Tokenizer: ...

    def special_id(self, text: str) -> int:
        return self.base_vocab_size + self.specials.index(text)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) of ``text``; special tokens' text becomes their ids."""
        if self._special_re is None:
            return self._encode_plain(text)
        pieces: list[np.ndarray] = []
        at = 0
        for m in self._special_re.finditer(text):
            pieces.append(self._encode_plain(text[at : m.start()]))
            pieces.append(np.array([self.special_id(m.group())], dtype=np.int64))
            at = m.end()
        pieces.append(self._encode_plain(text[at:]))
        return np.concatenate(pieces)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids``; an id outside [0, vocab_size) is an error."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            at = int(np.argmax(bad))
            raise DataError(f"token id {int(ids[at])} at position {at} is outside [0, {self.vocab_size})")
        special = np.flatnonzero(ids >= self.base_vocab_size)
        if not len(special):
            return self._decode_plain(ids)
        parts, at = [], 0
        for i in special:
            parts.append(self._decode_plain(ids[at:i]))
            parts.append(self.specials[ids[i] - self.base_vocab_size])
            at = i + 1
        parts.append(self._decode_plain(ids[at:]))
        return "".join(parts)
