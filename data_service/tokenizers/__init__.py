"""Tokenizers by kind. A prepared dataset saves its tokenizer as ``{"kind": ..., "state": ...}``."""

from __future__ import annotations

from typing import Any

from data_service.errors import DataError
from data_service.tokenizers.char import CharTokenizer

TOKENIZERS: dict[str, type[CharTokenizer]] = {"char": CharTokenizer}


def tokenizer_class(kind: str) -> type[CharTokenizer]:
    try:
        return TOKENIZERS[kind]
    except KeyError:
        raise DataError(f"unknown tokenizer {kind!r}; supported: {', '.join(TOKENIZERS)}") from None


def save(tokenizer: CharTokenizer) -> dict[str, Any]:
    return {"kind": tokenizer.kind, "state": tokenizer.to_dict()}


def load(saved: dict[str, Any]) -> CharTokenizer:
    return tokenizer_class(saved["kind"]).from_dict(saved["state"])
