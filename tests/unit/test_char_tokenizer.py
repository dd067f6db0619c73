"""The char tokenizer: round trip, save/load, and clear errors outside the vocabulary."""

import json

import numpy as np
import pytest

from data_service import tokenizers
from data_service.errors import DataError
from data_service.tokenizers.char import CharTokenizer

TEXT = "To be, or not to be: that is the question.\nÜber café — naïve 東京 🙂\n"


def test_vocab_is_sorted_distinct_chars():
    tok = CharTokenizer.train("banana")
    assert tok.chars == "abn"
    assert tok.vocab_size == 3
    assert tok.encode("nab").tolist() == [2, 0, 1]


def test_round_trip_including_non_ascii():
    tok = CharTokenizer.train(TEXT)
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int64
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids.tolist()) == TEXT
    assert tok.decode([]) == ""


def test_save_and_load_through_json():
    tok = CharTokenizer.train(TEXT)
    saved = json.loads(json.dumps(tokenizers.save(tok)))
    assert saved["kind"] == "char"
    loaded = tokenizers.load(saved)
    assert loaded.chars == tok.chars
    assert loaded.encode(TEXT).tolist() == tok.encode(TEXT).tolist()


def test_unknown_char_names_it_and_its_position():
    tok = CharTokenizer.train("abc")
    with pytest.raises(DataError, match=r"'z' at position 2 is not in the tokenizer's vocabulary"):
        tok.encode("abz")
    # Past the largest code point and before the smallest are both unknown, not clamped to a neighbour.
    with pytest.raises(DataError, match="'~'"):
        tok.encode("~")
    with pytest.raises(DataError, match="'A'"):
        tok.encode("A")


def test_decode_refuses_ids_outside_the_vocab():
    tok = CharTokenizer.train("abc")
    with pytest.raises(DataError, match=r"token id 3 at position 1 is outside \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(DataError, match="token id -1"):
        tok.decode([-1])


def test_bad_saved_vocab_and_unknown_kind_are_refused():
    with pytest.raises(ValueError):
        CharTokenizer.from_dict({"chars": "ba"})
    with pytest.raises(DataError, match="unknown tokenizer 'wordpiece'; supported: char, byte, bpe"):
        tokenizers.tokenizer_class("wordpiece")
