"""Retrieval corpora: each kind read as passages, and every bad retrieval option refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_service.errors import DataError, NotFoundError
from data_service.modules import discover
from data_service.modules.base import DataModule
from data_service.modules.text import PIECE_CHARS
from data_service.options import canonical_options
from data_service.retrieval.corpus import Corpus, resolve_corpus
from data_service.store import Store, check_request
from tests.anki_decks import genanki_deck
from tests.retrieval_facts import Almanac, write_pairs, write_passages

JSONL = discover()["jsonl"]


def passages(root: Path, name: str, module: DataModule = JSONL) -> list[str]:
    opts = canonical_options(module, "char", {"retrieval_corpus": name})
    corpus = resolve_corpus(module, root, opts, "pairs")
    assert corpus is not None
    return list(corpus.passages())


def test_text_and_markdown_passages_are_paragraphs(root: Path):
    (root / "notes.md").write_text("# Tides\n\nThe tide turns.\nTwice a day.\n\n\n\nGulls follow it.\n")
    assert passages(root, "notes.md") == ["# Tides", "The tide turns.\nTwice a day.", "Gulls follow it."]
    long = "\n".join(f"line {i} of a paragraph with no blank line in it" for i in range(40))
    (root / "long.txt").write_text(long + "\n")
    cut = passages(root, "long.txt")
    assert len(cut) > 1 and all(len(p) <= 2 * PIECE_CHARS for p in cut)
    assert "\n".join(cut) == long


def test_jsonl_passages_are_text_or_prompt_and_completion(root: Path):
    rows = [{"text": "Cove 3 is sandy."}, {"prompt": "Cove 4 is", "completion": " rocky."}, {"text": " "}]
    (root / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert passages(root, "c.jsonl") == ["Cove 3 is sandy.", "Cove 4 is rocky."]
    (root / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad\.jsonl has 1 bad line\(s\): line 2"):
        passages(root, "bad.jsonl")


def test_anki_passages_are_one_per_note_with_clozes_filled_in(root: Path):
    genanki_deck(root / "deck.apkg")
    found = passages(root, "deck.apkg")
    assert "Capital of France?\nParis" in found
    assert "Paris is the capital of France." in found  # the cloze note, its deletions shown
    assert "Which flag is this?" in found  # the image is not text; the other field is
    assert len(found) == 7  # six basic notes and one cloze note


def test_a_directory_reads_its_corpus_files_in_order(root: Path):
    (root / "lib" / "b").mkdir(parents=True)
    (root / "lib" / "a.txt").write_text("First.\n\nSecond.\n")
    (root / "lib" / "b" / "c.jsonl").write_text('{"text": "Third."}\n')
    (root / "lib" / "skip.csv").write_text("x,y\n1,2\n")
    assert passages(root, "lib") == ["First.", "Second.", "Third."]
    (root / "none").mkdir()
    (root / "none" / "t.csv").write_text("x\n")
    with pytest.raises(DataError, match="no corpus files in it"):
        passages(root, "none")


def test_builtin_is_the_modules_own_corpus(root: Path):
    found = passages(root, "builtin", Almanac())
    assert len(found) == 30 and found[5] == "At cove 5 the tide turns at hour 5."
    with pytest.raises(DataError, match="module 'jsonl' has no corpus of its own"):
        passages(root, "builtin")


def test_the_fingerprint_follows_the_content(root: Path):
    def fingerprint() -> str:
        opts = canonical_options(JSONL, "char", {"retrieval_corpus": "f.txt"})
        corpus = resolve_corpus(JSONL, root, opts, "pairs")
        assert isinstance(corpus, Corpus)
        return corpus.fingerprint()

    write_passages(root / "f.txt", 5)
    before = fingerprint()
    assert fingerprint() == before
    write_passages(root / "f.txt", 6)
    assert fingerprint() != before


def test_options_are_canonical_and_left_out_without_a_corpus():
    plain = canonical_options(JSONL, "char", {})
    assert not {"retrieval_corpus", "retrieve_k", "context_tokens", "retriever"} & set(plain)
    assert canonical_options(JSONL, "char", {"retrieval_corpus": ""}) == plain
    a = canonical_options(JSONL, "char", {"retrieval_corpus": "./lib//f.txt", "retrieve_k": "03"})
    b = canonical_options(
        JSONL, "char", {"retrieval_corpus": "lib/f.txt", "exclude_val_passages": "yes", "retriever": "bm25"}
    )
    assert a == b
    assert (a["retrieve_k"], a["context_tokens"], a["exclude_val_passages"]) == ("3", "256", "true")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retrieve_k": "5"}, "retrieve_k apply only with retrieval_corpus"),
        ({"retrieval_corpus": "", "context_tokens": "9"}, "context_tokens apply only with retrieval_corpus"),
        ({"retrieval_corpus": "f.txt", "retrieve_k": "0"}, "retrieve_k must be an integer from 1 to 64"),
        ({"retrieval_corpus": "f.txt", "retrieve_k": "many"}, "retrieve_k must be an integer"),
        ({"retrieval_corpus": "f.txt", "context_tokens": "-1"}, "context_tokens must be an integer"),
        ({"retrieval_corpus": "f.txt", "retriever": "dense"}, "retriever must be one of bm25, got 'dense'"),
        ({"retrieval_corpus": "f.txt", "exclude_val_passages": "maybe"}, "exclude_val_passages must be"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict, message: str):
    with pytest.raises(DataError, match=message):
        canonical_options(JSONL, "char", options)


@pytest.mark.parametrize(
    ("corpus", "packing", "message"),
    [
        ("f.txt", "stream", "retrieval_corpus needs packing 'pairs'"),
        ("missing.txt", "pairs", "retrieval_corpus: source 'missing.txt' not found"),
        ("../f.txt", "pairs", r"retrieval_corpus: source '../f.txt' is outside the data root"),
        ("t.csv", "pairs", r"retrieval_corpus: t.csv is not a corpus file; use .txt, .md, .jsonl, .apkg"),
    ],
)
def test_bad_corpora_are_refused_before_any_work(root: Path, corpus: str, packing: str, message: str):
    write_passages(root / "f.txt", 5)
    write_pairs(root / "qa.jsonl", 20)
    (root / "t.csv").write_text("x\n1\n")
    with pytest.raises((DataError, NotFoundError), match=message) as info:
        check_request(JSONL, root, "qa.jsonl", "char", packing, {"retrieval_corpus": corpus})
    assert info.value.field == "options"


def test_retrieval_needs_pairs_not_conversations(root: Path, store: Store):
    write_passages(root / "f.txt", 5)
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    (root / "chat.jsonl").write_text(json.dumps(chat) + "\n")
    with pytest.raises(DataError, match="retrieval_corpus needs prompt/completion pairs, but 1 of the 1"):
        options = {"retrieval_corpus": "f.txt"}
        store.prepare(discover()["chat"], root, "chat.jsonl", packing="pairs", options=options)
