"""The byte and BPE tokenizers, special tokens in every kind, and the stored token width."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_service import tokenizers
from data_service.errors import DataError
from data_service.options import token_dtype
from data_service.tokenizers import TOKENIZERS
from data_service.tokenizers.bpe import BpeTokenizer
from data_service.tokenizers.byte import ByteTokenizer

TEXT = "To be, or not to be: that is the question.\nÜber café — naïve 東京 🙂\n" * 20
END = "<|endoftext|>"


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_round_trip_with_a_special_token(kind: str):
    tok = TOKENIZERS[kind].train([TEXT], [END], {"vocab_size": "400"})
    text = "that is the question." + END + "naïve 🙂"
    ids = tok.encode(text)
    assert ids.dtype == np.int64
    assert tok.special_id(END) == tok.vocab_size - 1
    assert int(ids[np.flatnonzero(ids == tok.special_id(END))].size) == 1
    assert tok.decode(ids) == text
    loaded = tokenizers.load(json.loads(json.dumps(tokenizers.save(tok))))
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.encode(text).tolist() == ids.tolist()
    assert tok.decode([]) == ""


def test_byte_tokenizer_needs_no_training_and_knows_every_character():
    tok = ByteTokenizer.train([])
    assert tok.vocab_size == 256
    assert tok.encode("é").tolist() == [0xC3, 0xA9]
    assert tok.decode([0xC3]) == "\ufffd"  # half a character shows as a replacement, not an error


def test_bpe_learns_merges_and_its_vocab_size_is_an_option():
    small = BpeTokenizer.train([TEXT], [], {"vocab_size": "300"})
    large = BpeTokenizer.train([TEXT], [], {"vocab_size": "600"})
    assert small.vocab_size <= 300 and large.vocab_size > small.vocab_size
    assert len(large.encode(TEXT)) < len(small.encode(TEXT)) < len(TEXT.encode())
    # Byte level: text it never saw still encodes and round-trips.
    assert large.decode(large.encode("Zebra ΩΨ")) == "Zebra ΩΨ"


@pytest.mark.parametrize("size", ["10", "lots", str(2**21)])
def test_bpe_vocab_size_out_of_range(size: str):
    with pytest.raises(
        DataError, match=f"option vocab_size must be an integer from 256 to {2**20}, got '{size}'"
    ):
        BpeTokenizer.train([TEXT], [], {"vocab_size": size})


def test_decode_refuses_ids_outside_the_vocab():
    tok = ByteTokenizer.train([], [END])
    with pytest.raises(DataError, match=r"token id 257 at position 1 is outside \[0, 257\)"):
        tok.decode([65, 257])


def test_token_dtype():
    assert token_dtype("auto", 50_000) == "uint16"
    assert token_dtype("auto", 70_000) == "uint32"
    assert token_dtype("uint32", 10) == "uint32"
    with pytest.raises(DataError, match="70000 tokens, too many for token_dtype uint16 .at most 65536."):
        token_dtype("uint16", 70_000)
