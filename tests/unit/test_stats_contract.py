"""The stats_json contract: every key our data service writes, and every key the trainer reads, is in the
docs/data.md's "Dataset statistics" section (and the top-level ones in the .proto), so they cannot drift."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data_service.modules import discover
from data_service.store import Store
from tests.anki_decks import genanki_deck

REPO = Path(__file__).resolve().parents[2]
RETRIEVAL = {"retrieval_corpus": "t.txt"}
HEADING = "### Dataset statistics (`stats_json`)"
# Objects keyed by a split or a block size, not by names of their own.
KEYED_BY_VALUE = {
    "num_examples",
    "num_tokens",
    "why_empty",
    "max_block_size",
    "at_block_size",
    "sources",
    "examples",
    "supported",
    "rows_with_memory",
}


def documented() -> set[str]:
    readme = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    section = readme.split(HEADING, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return set(re.findall(r"`([^`\s]+)`", section))


def key_names(stats: dict[str, Any]) -> Iterator[str]:
    """Every key of the stats that names something, at any depth."""
    for key, value in stats.items():
        yield key
        if key == "module":
            yield from value
        elif isinstance(value, dict):
            for item in value.values() if key in KEYED_BY_VALUE else [value]:
                if isinstance(item, dict):
                    yield from key_names(item)


def module_counts() -> set[str]:
    """The names our modules pass to ``report.count``, read from their source (an f-string's
    constant part stands for the family, as docs/data.md writes it: ``format:<member>``)."""
    names = set()
    for path in (REPO / "data_service" / "modules").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "count"
                and getattr(func.value, "id", None) == "report"  # not str.count
                and node.args
            ):
                arg = node.args[0]
                if isinstance(arg, ast.JoinedStr):
                    names.add(f"{arg.values[0].value}<member>")  # type: ignore[attr-defined]
                else:
                    names |= {n.value for n in ast.walk(arg) if isinstance(n, ast.Constant)}
    return names


def trainer_reads() -> set[str]:
    """The stats keys the trainer's code reads: stats["k"], stats.get("k"), and the module's counts."""
    code = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "trainer_service").rglob("*.py"))
    key = r"""["'](\w+)["']"""
    keys = set(re.findall(r"stats(?:\.get\(|\[)" + key, code))
    keys |= set(re.findall(r"\(stats\.get\(\S+\) or \{\}\)\.get\(" + key, code))
    keys |= set(re.findall(r"\bmodule\.get\(" + key, code))
    return keys


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Real stats: text (BPE, and one whose val is emptied by duplicates), JSONL pairs, an Anki deck, sort,
    chats in both packings, a mix of a deck and chats, and pairs with a retrieval corpus and with memory."""
    base = tmp_path_factory.mktemp("stats")
    root = base / "data"
    root.mkdir()
    (root / "t.txt").write_text("A paragraph.\n\nAnother one here.\n" * 20, encoding="utf-8")
    (root / "same.txt").write_text("Only this.\n\n" * 5, encoding="utf-8")
    rows = [{"prompt": f"Q{i}?", "completion": f" A{i}"} for i in range(30)]
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n", encoding="utf-8")
    genanki_deck(root / "deck.apkg")
    chats = [
        {"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Yo {i}"}]}
        for i in range(20)
    ] + [{"messages": [{"role": "user", "content": "No reply"}]}]
    (root / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    (root / "mixed").mkdir()
    genanki_deck(root / "mixed" / "deck.apkg")
    (root / "mixed" / "chat.jsonl").write_text((root / "chat.jsonl").read_text(), encoding="utf-8")
    (root / "mixed" / "notes.doc").write_text("no module reads this", encoding="utf-8")
    store, modules = Store(base / "prepared"), discover()
    datasets = [
        store.prepare(modules["text"], root, "t.txt", tokenizer="bpe", options={"vocab_size": "300"}),
        store.prepare(modules["text"], root, "same.txt"),
        store.prepare(modules["jsonl"], root, "qa.jsonl", packing="pairs"),
        store.prepare(modules["anki"], root, "deck.apkg", packing="pairs"),
        store.prepare(modules["sort"], root, "sort", packing="pairs", options={"num_examples": "50"}),
        store.prepare(modules["chat"], root, "chat.jsonl"),
        store.prepare(modules["chat"], root, "chat.jsonl", packing="pairs"),
        store.prepare(modules["mix"], root, "mixed", packing="pairs"),
        store.prepare(modules["jsonl"], root, "qa.jsonl", packing="pairs", options=RETRIEVAL),
        store.prepare(modules["jsonl"], root, "qa.jsonl", packing="pairs", options={"memory_examples": "2"}),
    ]
    return [ds.meta["stats"] for ds in datasets]


def test_every_key_the_data_service_writes_is_documented(stats: list[dict[str, Any]]):
    written = {re.sub(r"^(format|module):.*", r"\1:<member>", n) for s in stats for n in key_names(s)}
    assert {"why_empty", "max_block_size", "prompt_tokens", "media_dropped_fields", "p95"} <= written
    assert {"trained_tokens", "conversations_without_reply", "sources", "files_skipped"} <= written
    assert {"retrieval", "val_passages_excluded", "supported", "leak_example"} <= written
    assert written - documented() == set()


def test_every_module_count_is_documented():
    counts = module_counts()
    assert {"media_only_fields", "media_dropped_fields", "notes_skipped_empty", "format:<member>"} <= counts
    assert counts - documented() == set()


def test_every_key_the_trainer_reads_is_documented():
    reads = trainer_reads()
    assert {"num_examples", "at_block_size", "media_dropped_fields", "unseen_examples"} <= reads
    assert reads - documented() == set()


def test_the_proto_names_every_top_level_key(stats: list[dict[str, Any]]):
    proto = (REPO / "proto/simtrain/data/v1/data_service.proto").read_text(encoding="utf-8")
    comment = proto.split("message DatasetInfo", 1)[1].split("string stats_json", 1)[0]
    listed = {line.split()[1] for line in comment.splitlines() if re.match(r"\s*//   [a-z_]+\s", line)}
    assert listed == {key for s in stats for key in s}
