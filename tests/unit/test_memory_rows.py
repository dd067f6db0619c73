"""Episodic memory packing (``memory_examples``): each row's previous examples of its document and split
before its prompt, masked; the answer trained; refused where it does not apply; ids without it unchanged."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.base import DataModule, Pair, Report
from data_service.store import FORMAT, Dataset, Store

END = "<|endoftext|>"


class Decks(DataModule):
    """Pairs of three decks, interleaved, from two sources; every prompt names its deck and source."""

    name = "decks"
    description = "test decks"
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        for i in range(90):
            doc, source = f"d{i % 3}", f"s{i % 2}"
            yield Pair(f"{source} {doc} card {i}?", f"a{i * 7 % 100}.", source=source, doc=doc)


def prepare(store: Store, root: Path, **options: str) -> Dataset:
    return store.prepare(Decks(), root, "decks", packing="pairs", options={"val_fraction": "0.3", **options})


def rows(ds: Dataset, split: str) -> list[tuple[str, str]]:
    """(what takes no loss, what does) of each row, decoded."""
    tok, tokens = ds.tokenizer(), ds.tokens(split)
    return [(tok.decode(tokens[s : s + p]), tok.decode(tokens[s + p : s + t])) for s, p, t in ds.rows(split)]


@pytest.mark.parametrize("k", [1, 3])
def test_rows_start_with_the_k_examples_before_them_in_their_doc_and_split(root: Path, store: Store, k: int):
    ds = prepare(store, root, memory_examples=str(k))
    examples = {p.prompt: p for p in Decks().read(None, {}, Report())}
    seen_splits = {}
    for split in ("train", "val"):
        before: dict[tuple[str, str], list[str]] = {}
        got = rows(ds, split)
        assert got
        for untrained, trained in got:
            prompt = next(p for p in examples if untrained.endswith(p))
            ex = examples[prompt]
            assert trained == ex.completion + END  # only the answer and its end token take loss
            past = before.setdefault((ex.source, ex.doc), [])
            assert untrained == "".join(past[-k:]) + prompt  # oldest first, then the prompt
            past.append(prompt + ex.completion + END)
            seen_splits[prompt] = split
    assert set(seen_splits.values()) == {"train", "val"}  # both splits held rows of every doc
    assert ds.meta["options"]["memory_examples"] == str(k)


def test_a_val_row_never_remembers_a_train_example(root: Path, store: Store):
    ds = prepare(store, root, memory_examples="5")
    train_prompts = {u.split(END)[-1] for u, _ in rows(ds, "train")}
    for untrained, _ in rows(ds, "val"):
        assert not any(p in untrained for p in train_prompts)


def test_off_by_default_and_the_id_is_unchanged(root: Path, store: Store):
    plain, zero = prepare(store, root), prepare(store, root, memory_examples="0")
    assert zero.id == plain.id and "memory_examples" not in plain.meta["options"]
    recipe = {"format": FORMAT, "module": "decks", "tokenizer": "char", "packing": "pairs"}
    key = json.dumps({**recipe, "options": plain.meta["options"]}, sort_keys=True)
    assert plain.id == hashlib.sha256(f"decks:synthetic\n{key}".encode()).hexdigest()[:16]
    assert set(plain.meta["options"]) == {"val_fraction", "separator", "overlong", "token_dtype"}
    assert all(u.count("card") == 1 for u, _ in rows(plain, "train"))  # no memory: the prompt alone
    assert prepare(store, root, memory_examples="2").id != plain.id


@pytest.mark.parametrize("value", ["-1", "x", "65", ""])
def test_bad_values_name_the_option(root: Path, store: Store, value: str):
    with pytest.raises(
        DataError, match=f"option memory_examples must be an integer from 0 to 64, got '{value}'"
    ):
        prepare(store, root, memory_examples=value)


def test_refused_with_stream_packing_and_with_conversations(root: Path, store: Store):
    with pytest.raises(DataError, match="option memory_examples needs packing 'pairs'"):
        store.prepare(Decks(), root, "decks", options={"memory_examples": "2"})
    (root / "chats.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="option memory_examples needs prompt/completion pairs"):
        store.prepare(
            discover()["chat"], root, "chats.jsonl", packing="pairs", options={"memory_examples": "1"}
        )
