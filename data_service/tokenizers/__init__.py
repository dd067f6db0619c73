"""Tokenizers by kind: ``char``, ``byte`` and ``bpe``. A prepared dataset saves its tokenizer as
``{"kind": ..., "state": ...}`` beside its tokens."""

from __future__ import annotations

from typing import Any

from data_service.errors import DataError
from data_service.tokenizers.base import Tokenizer
from data_service.tokenizers.bpe import BpeTokenizer
from data_service.tokenizers.byte import ByteTokenizer
from data_service.tokenizers.char import CharTokenizer

TOKENIZERS: dict[str, type[Tokenizer]] = {t.kind: t for t in (CharTokenizer, ByteTokenizer, BpeTokenizer)}


def tokenizer_class(kind: str) -> type[Tokenizer]:
    try:
        return TOKENIZERS[kind]
    except KeyError:
        raise DataError(f"unknown tokenizer {kind!r}; supported: {', '.join(TOKENIZERS)}") from None


def save(tokenizer: Tokenizer) -> dict[str, Any]:
    return {"kind": tokenizer.kind, "state": tokenizer.to_dict()}


def load(saved: dict[str, Any]) -> Tokenizer:
    return tokenizer_class(saved["kind"]).from_dict(saved["state"])
