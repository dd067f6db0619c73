"""`simtrain datasets list` and `show` say when prompts retrieve from a corpus or rows remember examples."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from data_service.modules import discover
from data_service.store import Store
from simtrain.cli.dataset_stats import stats_table
from simtrain.cli.datasets import dataset_table
from tests.retrieval_facts import write_pairs, write_passages


def shown(table: object) -> str:
    console = Console(width=400, record=True)
    console.print(table)
    return " ".join(console.export_text().split())


def listed(meta: dict) -> dict:
    """A prepared dataset as GET /v1/datasets lists it."""
    splits = {
        s: {"tokens": v["num_tokens"], "examples": v["num_examples"]} for s, v in meta["splits"].items()
    }
    keys = ("id", "module", "source", "packing", "vocab_size", "stats", "warnings")
    return {k: meta[k] for k in keys} | {"splits": splits, "tokenizer": meta["tokenizer"]["kind"]}


def test_a_retrieval_dataset_shows_its_corpus_and_what_the_context_holds(root: Path, store: Store) -> None:
    write_pairs(root / "qa.jsonl", 40)
    write_passages(root / "facts.txt", 40)
    jsonl = discover()["jsonl"]
    plain = store.prepare(jsonl, root, "qa.jsonl", packing="pairs")
    with_corpus = store.prepare(
        jsonl, root, "qa.jsonl", packing="pairs", options={"retrieval_corpus": "facts.txt"}
    )
    table = shown(dataset_table([listed(plain.meta), listed(with_corpus.meta)]))
    assert f"{plain.id} jsonl qa.jsonl char" in table
    assert f"{with_corpus.id} jsonl qa.jsonl + retrieval from facts.txt char" in table
    stats = shown(stats_table(with_corpus.meta["stats"], "char"))
    assert "retrieval bm25 over facts.txt (40 passages, 0 built from val left out), top 3" in stats
    assert "answer in the context for 40 of 40 examples" in stats and "0 val answers given away" in stats
    assert "retrieval" not in shown(stats_table(plain.meta["stats"], "char"))


def test_a_memory_dataset_shows_how_many_examples_each_row_remembers(root: Path, store: Store) -> None:
    write_pairs(root / "qa.jsonl", 40)
    ds = store.prepare(
        discover()["jsonl"], root, "qa.jsonl", packing="pairs", options={"memory_examples": "2"}
    )
    splits = ds.meta["splits"]
    assert f"{ds.id} jsonl qa.jsonl + memory of 2 examples char" in shown(dataset_table([listed(ds.meta)]))
    stats = shown(stats_table(ds.meta["stats"], "char"))
    # One document: every row but the first of its split has examples before it.
    with_some = f"train {splits['train']['num_examples'] - 1}, val {splits['val']['num_examples'] - 1}"
    assert "episodic memory the 2 examples before each row in its document and split, untrained; " in stats
    assert f"rows with some: {with_some}" in stats
