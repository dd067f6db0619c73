"""GetRows' rows: built as batches are, so a token is trained exactly where a batch takes loss on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.rows import MAX_ROWS, get_rows
from data_service.sampling import EpochOrder, pair_batch
from data_service.store import Dataset, Store
from simtrain.data.v1 import data_service_pb2 as pb

TRAINED, MASKED, PADDING = pb.TOKEN_ROLE_TRAINED, pb.TOKEN_ROLE_MASKED, pb.TOKEN_ROLE_PADDING


def text_dataset(root: Path, store: Store, text: str, tokenizer: str = "char") -> Dataset:
    (root / "notes.txt").write_text(text, encoding="utf-8")
    return store.prepare(discover()["text"], root, "notes.txt", tokenizer, options={"val_fraction": "0"})


def pairs_dataset(root: Path, store: Store, n: int = 30) -> Dataset:
    rows = [{"prompt": f"Q{i} is?", "completion": f" A{i * 7}"} for i in range(n)]
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return store.prepare(discover()["jsonl"], root, "qa.jsonl", packing="pairs")


def rows(ds: Dataset, start: int = 0, count: int = 8, block_size: int = 8, split: str = "train"):
    request = pb.GetRowsRequest(split=split, start=start, count=count, block_size=block_size)
    return get_rows(ds, request)


def test_stream_rows_cover_every_token_once_as_a_target(root: Path, store: Store):
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(12))
    ds = text_dataset(root, store, text)
    tokens = ds.tokens("train").astype(np.int64)
    answer = rows(ds, count=MAX_ROWS)
    assert answer.packing == "stream"
    assert answer.total_rows == len(answer.rows) == -(-(len(tokens) - 1) // 8)
    for i, row in enumerate(answer.rows):
        assert row.index == i and len(row.tokens) == 9
        ids = [t.id for t in row.tokens]
        assert ids == tokens[row.token_offset : row.token_offset + 9].tolist()
        assert [t.role for t in row.tokens] == [MASKED] + [TRAINED] * 8
        assert "".join(t.text for t in row.tokens) == ds.tokenizer().decode(ids)
    # Each row starts at the last target of the one before; the last one ends at the split's end.
    assert [r.token_offset for r in answer.rows[:-1]] == list(range(0, 8 * (len(answer.rows) - 1), 8))
    assert answer.rows[-1].token_offset == len(tokens) - 9


def test_stream_rows_page_and_stop_at_the_end(root: Path, store: Store):
    ds = text_dataset(root, store, "abcdefghij" * 10)
    whole = rows(ds, count=20)
    page = rows(ds, start=3, count=4)
    assert [r.SerializeToString() for r in page.rows] == [r.SerializeToString() for r in whole.rows[3:7]]
    past = rows(ds, start=whole.total_rows, count=4)
    assert past.total_rows == whole.total_rows and not past.rows


def test_a_block_longer_than_the_split_is_refused_with_the_size_that_fits(root: Path, store: Store):
    ds = text_dataset(root, store, "abcdefghij")
    with pytest.raises(DataError, match="use block_size 9 or less") as e:
        rows(ds, block_size=10)
    assert e.value.field == "block_size"


def test_pair_rows_mask_the_prompt_train_the_answer_and_pad(root: Path, store: Store):
    ds = pairs_dataset(root, store)
    tok, end = ds.tokenizer(), ds.meta["end_token"]
    examples = ds.rows("train")
    answer = rows(ds, count=MAX_ROWS, block_size=16)
    assert answer.packing == "pairs" and answer.total_rows == len(answer.rows) == len(examples)
    for row in answer.rows:
        start, prompt_len, total = (int(v) for v in examples[row.index])
        assert row.token_offset == start and not row.truncated and len(row.tokens) == 17
        got = [t.role for t in row.tokens]
        assert got == [MASKED] * prompt_len + [TRAINED] * (total - prompt_len) + [PADDING] * (17 - total)
        text = "".join(t.text for t in row.tokens[:total])
        assert text == tok.decode(ds.tokens("train")[start : start + total])
        assert text.endswith("<|endoftext|>") and row.tokens[total - 1].special
        assert all(t.id == end for t in row.tokens[total:])


def test_pair_rows_take_loss_exactly_where_the_batch_does(root: Path, store: Store):
    """The trained tokens of a row are the targets a batch of the same examples does not mask."""
    ds = pairs_dataset(root, store)
    tokens, examples = ds.tokens("train"), ds.rows("train")
    order = EpochOrder(len(examples), 5, "train")
    x, y = pair_batch(tokens, examples, order, block_size=6, batch_size=4, step=0, pad=ds.meta["end_token"])
    answer = rows(ds, count=len(examples), block_size=6)
    for i, example in enumerate(order.take(0, 4)):
        row = answer.rows[int(example)]
        assert [t.id for t in row.tokens[:-1]] == x[i].tolist()
        assert [t.role == TRAINED for t in row.tokens[1:]] == (y[i] != -1).tolist()
        assert row.truncated  # every example is longer than 7 tokens


def test_a_token_cut_from_a_character_and_the_end_token_are_shown_as_such(root: Path, store: Store):
    ds = text_dataset(root, store, "né " * 20, tokenizer="byte")
    row = rows(ds, count=1, block_size=4).rows[0]
    assert [t.text for t in row.tokens] == ["n", "\ufffd", "\ufffd", " ", "n"]
    assert not any(t.special for t in row.tokens)


@pytest.mark.parametrize(
    ("args", "field", "says"),
    [
        ({"split": "test"}, "split", "split must be one of train, val"),
        ({"start": -1}, "start", "start must not be negative"),
        ({"count": 0}, "count", f"count must be from 1 to {MAX_ROWS}"),
        ({"count": MAX_ROWS + 1}, "count", f"count must be from 1 to {MAX_ROWS}"),
        ({"block_size": 0}, "block_size", "block_size must be from 1"),
        ({"count": 256, "block_size": 8192}, "count", "ask for fewer rows"),
    ],
)
def test_bad_arguments_name_the_field(root: Path, store: Store, args: dict, field: str, says: str):
    ds = text_dataset(root, store, "abcdefghij" * 10)
    with pytest.raises(DataError, match=says) as e:
        rows(ds, **args)
    assert e.value.field == field
