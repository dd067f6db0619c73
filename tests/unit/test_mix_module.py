"""The mix module: a folder of decks, JSONL and tables in one dataset, each example keeping its file,
and the stats counting per source."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.base import Chat, Pair, Report
from data_service.modules.mix import MixModule, reader_of
from data_service.store import Store
from tests.anki_decks import genanki_deck

DEFAULTS = {o.name: o.default for o in MixModule.options}


def chats(n: int) -> str:
    turns = lambda i: [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]  # noqa: E731
    return "".join(json.dumps({"messages": turns(i)}) + "\n" for i in range(n))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "mixed"
    (folder / "decks").mkdir(parents=True)
    genanki_deck(folder / "decks" / "Geschäftsprozess.apkg")
    (folder / "talk.jsonl").write_text(chats(10), encoding="utf-8")
    (folder / "qa.jsonl").write_text(
        json.dumps({"prompt": "1+1=", "completion": "2"}) + "\n", encoding="utf-8"
    )
    (folder / "alpaca.json").write_text(
        json.dumps([{"instruction": "Hi", "output": "Hello"}]), encoding="utf-8"
    )
    pq.write_table(pa.table({"front": ["Hund", "Katze"], "back": ["dog", "cat"]}), folder / "cards.parquet")
    return folder


def read(folder: Path, report: Report | None = None, **options: str) -> list:
    return list(MixModule().read(folder, DEFAULTS | options, report or Report()))


def test_each_file_goes_to_the_module_of_its_kind(folder: Path):
    kinds = {p.name: reader_of(p).name for p in folder.rglob("*") if reader_of(p)}  # type: ignore[union-attr]
    assert kinds == {
        "Geschäftsprozess.apkg": "anki",
        "talk.jsonl": "chat",
        "qa.jsonl": "jsonl",
        "alpaca.json": "alpaca",
        "cards.parquet": "table",
    }


def test_examples_keep_the_file_they_came_from(folder: Path):
    report = Report()
    got = read(folder, report, glob="**/*", prompt_column="front", answer_column="back")
    sources = {e.source for e in got}
    assert sources == {
        "alpaca.json",
        "cards.parquet",
        "decks/Geschäftsprozess.apkg",
        "qa.jsonl",
        "talk.jsonl",
    }
    assert all(isinstance(e, Chat) for e in got if e.source in ("talk.jsonl", "alpaca.json"))
    assert [e for e in got if e.source == "cards.parquet"] == [
        Pair("Hund", "dog", "cards.parquet"),
        Pair("Katze", "cat", "cards.parquet"),
    ]
    assert report.counts["module:anki"] == 1 and report.counts["module:chat"] == 1
    assert report.counts["media_only_fields"] == 2  # the deck's own counts come along


def test_the_glob_picks_the_files(folder: Path):
    got = read(folder, glob="decks/*.apkg")
    assert {e.source for e in got} == {"decks/Geschäftsprozess.apkg"}
    assert {e.source for e in read(folder, glob="*.jsonl")} == {"qa.jsonl", "talk.jsonl"}


def test_files_no_module_reads_are_counted_and_warned(folder: Path):
    (folder / "slides.pdf").write_bytes(b"%PDF")
    report = Report()
    read(folder, report, glob="*.jsonl")
    assert "files_skipped" not in report.counts and not report.warnings  # the glob left it out
    read(folder, report, glob="*", prompt_column="front", answer_column="back")
    assert report.counts["files_skipped"] == 1
    assert any("slides.pdf" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("glob", "reason"),
    [
        ("*.txt", "option glob '*.txt' picks no file a module reads"),
        ("../*", "must stay inside the folder"),
        ("/etc/*", "must stay inside the folder"),
    ],
)
def test_a_glob_that_picks_nothing_or_leaves_the_folder_is_refused(folder: Path, glob: str, reason: str):
    with pytest.raises(DataError, match=re.escape(reason)):
        read(folder, glob=glob)


def test_a_file_is_not_a_mix(folder: Path):
    with pytest.raises(DataError, match="is not a folder: module mix reads the files of one"):
        read(folder / "talk.jsonl")


def test_a_bad_file_in_the_mix_is_named(folder: Path):
    (folder / "broken.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}]}\n{oops\n')
    with pytest.raises(DataError, match=r"broken.jsonl has 1 bad line\(s\): line 2: not valid JSON"):
        read(folder, glob="*.jsonl")


def test_stats_count_examples_and_tokens_per_source(folder: Path, tmp_path: Path):
    ds = Store(tmp_path / "prepared").prepare(
        discover()["mix"],
        folder.parent,
        "mixed",
        packing="pairs",
        options={"glob": "**/*", "prompt_column": "front", "answer_column": "back"},
    )
    stats = ds.meta["stats"]
    sources = stats["sources"]
    assert set(sources) == {
        "alpaca.json",
        "cards.parquet",
        "decks/Geschäftsprozess.apkg",
        "qa.jsonl",
        "talk.jsonl",
    }
    assert sum(sum(c["examples"].values()) for c in sources.values()) == sum(stats["num_examples"].values())
    assert sum(sum(c["tokens"].values()) for c in sources.values()) == sum(stats["num_tokens"].values())
    assert sum(sources["talk.jsonl"]["examples"].values()) == 10
    assert (
        sources["cards.parquet"]["examples"] == {"train": 2, "val": 0}
        or sum(sources["cards.parquet"]["examples"].values()) == 2
    )
    assert ds.meta["masked"]  # the chats bring their loss mask; the pairs' prompts are masked by it too


def test_a_single_source_dataset_has_no_per_source_stats(tmp_path: Path):
    (tmp_path / "talk.jsonl").write_text(chats(10), encoding="utf-8")
    ds = Store(tmp_path / "prepared").prepare(discover()["chat"], tmp_path, "talk.jsonl")
    assert "sources" not in ds.meta["stats"]
