"""Byte-level tokenizer: the UTF-8 bytes of the text, 256 ids, nothing to learn and nothing unknown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from data_service.tokenizers.base import Tokenizer


class ByteTokenizer(Tokenizer):
    kind = "byte"

    @classmethod
    def train(
        cls, texts: Iterable[str], specials: Sequence[str] = (), options: Mapping[str, str] | None = None
    ) -> ByteTokenizer:
        return cls(specials)

    @property
    def base_vocab_size(self) -> int:
        return 256

    def _encode_plain(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).astype(np.int64)

    def _decode_plain(self, ids: np.ndarray) -> str:
        # A model's output may cut a character in half; show that as U+FFFD rather than failing.
        return ids.astype(np.uint8).tobytes().decode("utf-8", "replace")

    def to_dict(self) -> dict[str, Any]:
        return {"specials": self.specials}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ByteTokenizer:
        return cls(saved.get("specials", ()))
