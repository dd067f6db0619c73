"""Byte-level BPE trained on the dataset with Hugging Face ``tokenizers`` (GPT-2 style: no unknowns).

``vocab_size`` is an option; a small corpus may stop short of it, and the real size is what counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from data_service.errors import DataError
from data_service.tokenizers.base import Tokenizer

MAX_VOCAB = 1 << 20
# BPE merges never apply across these; byte-level keeps every character encodable.
MIN_VOCAB = 256


class BpeTokenizer(Tokenizer):
    kind = "bpe"
    options = {"vocab_size": "4096"}

    def __init__(self, hf: HFTokenizer, specials: Sequence[str]) -> None:
        super().__init__(specials)
        self.hf = hf
        self._base = hf.get_vocab_size(with_added_tokens=True) - len(self.specials)

    @classmethod
    def train(
        cls, texts: Iterable[str], specials: Sequence[str] = (), options: Mapping[str, str] | None = None
    ) -> BpeTokenizer:
        raw = (options or {}).get("vocab_size", cls.options["vocab_size"])
        try:
            size = int(raw)
        except ValueError:
            size = 0
        smallest = MIN_VOCAB + len(specials)
        if not smallest <= size <= MAX_VOCAB:
            raise DataError(
                f"option vocab_size must be an integer from {smallest} to {MAX_VOCAB}, got {raw!r}"
            )
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        # Plain tokens first (ids 0..), so the specials can take the ids after them.
        trainer = trainers.BpeTrainer(
            vocab_size=size - len(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer)
        hf.add_special_tokens(list(specials))
        return cls(hf, specials)

    @property
    def base_vocab_size(self) -> int:
        return self._base

    def encode(self, text: str) -> np.ndarray:
        # The HF tokenizer splits out special tokens itself, at the ids they were added with.
        return np.array(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encoded = self.hf.encode_batch(list(texts), add_special_tokens=False)
        return [np.array(e.ids, dtype=np.int64) for e in encoded]

    def _encode_plain(self, text: str) -> np.ndarray:
        return self.encode(text)

    def _decode_plain(self, ids: np.ndarray) -> str:
        return self.hf.decode(ids.tolist(), skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"hf": self.hf.to_str(), "specials": self.specials}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> BpeTokenizer:
        return cls(HFTokenizer.from_str(saved["hf"]), saved.get("specials", ()))
