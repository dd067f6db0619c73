"""Retrieval-augmented pairs rows: context masked before the prompt, the cut, val passages kept out of the
index, the retrieval stats, and dataset ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.retrieval.context import PASSAGE_SEPARATOR, PROMPT_MARKER
from data_service.retrieval.leaks import words
from data_service.store import FORMAT, Dataset, Store
from tests.retrieval_facts import Almanac, facts, write_pairs, write_passages

JSONL = discover()["jsonl"]
N = 60
ANSWERS = {prompt: answer for prompt, answer, _ in facts(N)}
PASSAGES = {prompt: passage for prompt, _, passage in facts(N)}


def prepare(store: Store, root: Path, **options: str) -> Dataset:
    write_pairs(root / "qa.jsonl", N)
    write_passages(root / "facts.txt", N)
    return store.prepare(JSONL, root, "qa.jsonl", packing="pairs", options=options)


def rows(ds: Dataset, split: str) -> list[tuple[str, str, str]]:
    """(context with its marker, prompt, what follows it) of each row, decoded."""
    tok, tokens = ds.tokenizer(), ds.tokens(split)
    out = []
    for start, prompt_len, total in ds.rows(split):
        head = tok.decode(tokens[start : start + prompt_len])
        context, marker, prompt = head.rpartition(PROMPT_MARKER)
        assert marker, head
        out.append((context, prompt, tok.decode(tokens[start + prompt_len : start + total])))
    return out


def retrieval(ds: Dataset) -> dict[str, Any]:
    return ds.meta["stats"]["retrieval"]


def test_rows_are_context_prompt_then_the_trained_answer(root: Path, store: Store):
    ds = prepare(store, root, retrieval_corpus="facts.txt", retrieve_k="2")
    for split in ("train", "val"):
        for context, prompt, trained in rows(ds, split):
            assert trained == ANSWERS[prompt] + "<|endoftext|>"  # loss only on the answer and end token
            passages = context.split(PASSAGE_SEPARATOR)
            assert len(passages) == 2 and passages[0] == PASSAGES[prompt]  # its own fact ranks first
    stats = retrieval(ds)
    assert set(stats) == {  # the fit report's retrieval checks read exactly these
        "corpus",
        "retriever",
        "retrieve_k",
        "context_tokens",
        "passages",
        "val_passages_excluded",
        "examples",
        "supported",
        "context_tokens_retrieved",
        "context_tokens_kept",
        "val_leaks",
        "leak_example",
        "unsupported_example",
    }
    assert stats["examples"] == ds.meta["stats"]["num_examples"]
    assert stats["supported"] == stats["examples"] and stats["unsupported_example"] is None
    assert stats["context_tokens_kept"] == stats["context_tokens_retrieved"]  # 2 short facts fit in 256
    assert (stats["corpus"], stats["retriever"], stats["retrieve_k"], stats["passages"]) == (
        "facts.txt",
        "bm25",
        2,
        N,
    )
    folder = ds.path / "retrieval"
    assert {"passages.txt", "offsets.npy", "from_val.npy", "bm25"} <= {p.name for p in folder.iterdir()}


def test_the_query_is_the_prompt_never_the_answer(root: Path, store: Store):
    answer = ANSWERS[next(iter(ANSWERS))].strip()
    (root / "lure.txt").write_text(f"{answer} {answer} {answer}\n\nThe lighthouse on isle 0 is tall.\n")
    ds = prepare(store, root, retrieval_corpus="lure.txt", retrieve_k="1")
    contexts = [c for split in ("train", "val") for c, p, _ in rows(ds, split) if p.endswith("isle 0?")]
    assert contexts == ["The lighthouse on isle 0 is tall."]


def test_fewer_passages_than_retrieve_k_and_none_at_all(root: Path, store: Store):
    (root / "one.txt").write_text("Every lighthouse has a keeper.\n", encoding="utf-8")
    ds = prepare(store, root, retrieval_corpus="one.txt", retrieve_k="5")
    assert {c for c, _, _ in rows(ds, "train")} == {"Every lighthouse has a keeper."}
    (root / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(DataError, match="retrieval_corpus: 'blank.txt' holds no passages"):
        prepare(store, root, retrieval_corpus="blank.txt")


def test_the_context_is_cut_to_context_tokens(root: Path, store: Store):
    ds = prepare(store, root, retrieval_corpus="facts.txt", context_tokens="20")
    tok = ds.tokenizer()
    marker = len(tok.encode(PROMPT_MARKER))
    for split in ("train", "val"):
        for start, prompt_len, _ in ds.rows(split):
            prompt = tok.decode(ds.tokens(split)[start : start + prompt_len]).rpartition(PROMPT_MARKER)[2]
            assert prompt_len == 20 + marker + len(tok.encode(prompt))
    stats = retrieval(ds)
    assert stats["context_tokens_kept"] == 20 * N < stats["context_tokens_retrieved"]
    # 20 characters of "The lighthouse on isle 7 is kept by ..." never reach the keeper's name.
    assert stats["supported"] == {"train": 0, "val": 0}
    assert stats["unsupported_example"] in ANSWERS


def test_val_passages_are_left_out_of_the_index_and_counted(root: Path, store: Store):
    ds = prepare(store, root, retrieval_corpus="qa.jsonl")  # the corpus is the QA data itself
    stats, val = retrieval(ds), rows(ds, "val")
    assert stats["val_passages_excluded"] == len(val) == stats["examples"]["val"] > 0
    assert stats["passages"] == N - len(val)
    assert stats["val_leaks"] == 0 and stats["leak_example"] is None
    for context, prompt, _ in val:
        assert not set(words(ANSWERS[prompt])) <= set(words(context))  # each answer is a word of its own
    assert stats["supported"] == {"train": stats["examples"]["train"], "val": 0}
    assert stats["unsupported_example"] in {p for _, p, _ in val}  # a val prompt comes first


def test_without_exclusion_the_val_leaks_are_counted(root: Path, store: Store):
    ds = prepare(store, root, retrieval_corpus="qa.jsonl", exclude_val_passages="false")
    stats, val = retrieval(ds), rows(ds, "val")
    assert stats["val_passages_excluded"] == 0 and stats["passages"] == N
    assert stats["val_leaks"] == len(val) > 0
    assert stats["leak_example"] in {p for _, p, _ in val}


def test_train_rows_may_retrieve_their_own_passage(root: Path, store: Store):
    ds = prepare(store, root, retrieval_corpus="qa.jsonl", retrieve_k="1")
    for context, prompt, _ in rows(ds, "train"):
        assert context == f"{prompt} {ANSWERS[prompt].strip()}"


def test_the_tokenizer_learns_the_corpus(root: Path, store: Store):
    (root / "more.txt").write_text("Isle 0 has a lighthouse: Ωμέγα.\n", encoding="utf-8")
    ds = prepare(store, root, retrieval_corpus="more.txt")
    tok = ds.tokenizer()
    assert tok.decode(tok.encode("Ωμέγα")) == "Ωμέγα"
    assert any("Ωμέγα" in c for c, p, _ in rows(ds, "train") + rows(ds, "val") if p.endswith("isle 0?"))


def test_ids_without_retrieval_are_as_before(root: Path, store: Store):
    ds = prepare(store, root)
    # The id's recipe, spelled out independently: retrieval adds nothing to a dataset without it.
    assert set(ds.meta["options"]) == {
        "val_fraction",
        "separator",
        "overlong",
        "token_dtype",
        "text_field",
        "prompt_field",
        "completion_field",
    }
    recipe = {"format": FORMAT, "module": "jsonl", "tokenizer": "char", "packing": "pairs"}
    key = json.dumps({**recipe, "options": ds.meta["options"]}, sort_keys=True)
    source = hashlib.sha256((root / "qa.jsonl").read_bytes()).hexdigest()
    assert ds.id == hashlib.sha256(f"{source}\n{key}".encode()).hexdigest()[:16]
    assert not (ds.path / "retrieval").exists() and "retrieval" not in ds.meta["stats"]


def test_a_changed_corpus_is_a_new_dataset(root: Path, store: Store):
    first = prepare(store, root, retrieval_corpus="facts.txt")
    assert prepare(store, root, retrieval_corpus="./facts.txt", retrieve_k="3").id == first.id
    with (root / "facts.txt").open("a", encoding="utf-8") as f:
        f.write("\nIsle 99 has no lighthouse.\n")
    options = {"retrieval_corpus": "facts.txt"}
    changed = store.prepare(JSONL, root, "qa.jsonl", packing="pairs", options=options)
    assert changed.id != first.id
    assert retrieval(changed)["passages"] == N + 1
    assert prepare(store, root).id != first.id


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_other_tokenizers_cut_in_their_own_tokens(root: Path, store: Store, tokenizer: str):
    write_pairs(root / "qa.jsonl", N)
    write_passages(root / "facts.txt", N)
    options = {"retrieval_corpus": "facts.txt", "context_tokens": "16"}
    if tokenizer == "bpe":
        options["vocab_size"] = "300"
    ds = store.prepare(JSONL, root, "qa.jsonl", tokenizer=tokenizer, packing="pairs", options=options)
    assert retrieval(ds)["context_tokens_kept"] == 16 * N
    assert all(t.endswith(ANSWERS[p] + "<|endoftext|>") for _, p, t in rows(ds, "train"))


def test_a_builtin_corpus_prepares_and_is_part_of_the_id(root: Path, store: Store):
    almanac = Almanac()
    ds = store.prepare(almanac, root, "almanac", packing="pairs", options={"retrieval_corpus": "builtin"})
    stats = retrieval(ds)
    assert stats["corpus"] == "builtin" and stats["passages"] == 30 and stats["val_passages_excluded"] == 0
    assert stats["supported"] == stats["examples"]
    for context, prompt, _ in rows(ds, "train"):
        cove = prompt.removeprefix("When does the tide turn at cove ").removesuffix("?")
        assert context.split(PASSAGE_SEPARATOR)[0].startswith(f"At cove {cove} the tide")
    almanac.hours = 7  # the same module and options with other facts: another dataset
    again = store.prepare(almanac, root, "almanac", packing="pairs", options={"retrieval_corpus": "builtin"})
    assert again.id != ds.id
