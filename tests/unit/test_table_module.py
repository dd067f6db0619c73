"""The table module: CSV, TSV, Parquet, Arrow and save_to_disk folders, read locally with pyarrow;
a missing column or a bad row is named with the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.base import Chat, Pair, Report, Text
from data_service.modules.table import TableModule
from data_service.store import Store

DEFAULTS = {o.name: o.default for o in TableModule.options}
CARDS = pa.table({"front": ["Hund", "Katze", "Maus"], "back": ["dog", "cat, the animal", "mouse"]})


def read(path: Path, report: Report | None = None, **options: str) -> list:
    return list(TableModule().read(path, DEFAULTS | options, report or Report()))


def pairs(examples: list) -> list[tuple[str, str]]:
    return [(e.prompt, e.completion) for e in examples]


def save_to_disk(folder: Path, table: pa.Table, shards: int = 1) -> Path:
    """A folder laid out as Hugging Face ``datasets``' save_to_disk writes it: Arrow stream files,
    ``state.json`` naming them, ``dataset_info.json`` describing the features."""
    folder.mkdir(parents=True)
    names = []
    step = -(-len(table) // shards)
    for i in range(shards):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(i * step, step))
        names.append(name)
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": "0", "_split": None}
    (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")
    features = {c: {"dtype": "string", "_type": "Value"} for c in table.column_names}
    (folder / "dataset_info.json").write_text(json.dumps({"features": features}), encoding="utf-8")
    return folder


def test_csv_and_tsv_rows_as_pairs_or_documents(tmp_path: Path):
    (tmp_path / "c.csv").write_text('front,back\nHund,dog\nKatze,"cat, the animal"\n', encoding="utf-8")
    (tmp_path / "c.tsv").write_text("front\tback\nHund\tdog\n007\tagent\n", encoding="utf-8")
    assert pairs(read(tmp_path / "c.csv", prompt_column="front", answer_column="back")) == [
        ("Hund", "dog"),
        ("Katze", "cat, the animal"),
    ]
    # Every cell is text: "007" is not guessed to be the number 7.
    assert [t.text for t in read(tmp_path / "c.tsv", text_column="front")] == ["Hund", "007"]


def test_parquet_and_arrow_files(tmp_path: Path):
    pq.write_table(CARDS, tmp_path / "c.parquet")
    with pa.OSFile(str(tmp_path / "c.arrow"), "wb") as sink, pa.ipc.new_file(sink, CARDS.schema) as writer:
        writer.write_table(CARDS)
    expected = list(zip(CARDS["front"].to_pylist(), CARDS["back"].to_pylist(), strict=True))
    for name in ("c.parquet", "c.arrow"):
        got = read(tmp_path / name, prompt_column="front", answer_column="back")
        assert pairs(got) == expected and all(e.source == name for e in got)


def test_a_save_to_disk_folder_and_a_dataset_dict(tmp_path: Path):
    folder = save_to_disk(tmp_path / "saved", CARDS, shards=2)
    assert [t.text for t in read(folder, text_column="back")] == CARDS["back"].to_pylist()
    root = tmp_path / "dict"
    save_to_disk(root / "train", CARDS)
    save_to_disk(root / "test", CARDS.slice(0, 1))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}), encoding="utf-8")
    assert len(read(root, text_column="back")) == 3
    assert len(read(root, text_column="back", split="test")) == 1
    with pytest.raises(DataError, match="save_to_disk folder with splits train, test; option split is 'dev'"):
        read(root, text_column="back", split="dev")


def test_a_folder_of_tables_keeps_each_example_s_file(tmp_path: Path):
    (tmp_path / "t").mkdir()
    pq.write_table(CARDS, tmp_path / "t" / "a.parquet")
    (tmp_path / "t" / "b.csv").write_text("front,back\nVogel,bird\n", encoding="utf-8")
    (tmp_path / "t" / "notes.txt").write_text("not a table\n", encoding="utf-8")
    got = read(tmp_path / "t", prompt_column="front", answer_column="back")
    assert [e.source for e in got] == ["a.parquet"] * 3 + ["b.csv"]


def test_a_messages_column_is_rendered_with_the_chat_template(tmp_path: Path):
    talks = pa.table(
        {
            "messages": [
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                [{"role": "user", "content": "Bye"}],
            ]
        }
    )
    pq.write_table(talks, tmp_path / "talks.parquet")
    report = Report()
    chats = read(tmp_path / "talks.parquet", report, messages_column="messages")
    assert all(isinstance(c, Chat) for c in chats)
    assert chats[0].text == "<|user|>Hi<|end|><|assistant|>Hello.<|end|><|endoftext|>"
    assert report.counts["conversations_without_reply"] == 1


def test_missing_column_names_the_file_the_column_and_the_columns_present(tmp_path: Path):
    pq.write_table(CARDS, tmp_path / "c.parquet")
    (tmp_path / "c.csv").write_text("front,back\nHund,dog\n", encoding="utf-8")
    for name in ("c.parquet", "c.csv"):
        with pytest.raises(DataError) as e:
            read(tmp_path / name)  # text_column defaults to "text"
        assert f"{name} has no column 'text'; its columns are 'front', 'back'" in str(e.value)
    with pytest.raises(DataError, match="c.parquet has no column 'answer'"):
        read(tmp_path / "c.parquet", prompt_column="front", answer_column="answer")


def test_csv_rows_of_the_wrong_width_are_named_by_line(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("front,back\nHund,dog\nKatze\nMaus,mouse,extra\nVogel,bird\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read(path, text_column="front")
    assert str(e.value).endswith(
        "bad.csv has 2 bad row(s): line 3: 1 fields where the header has 2; "
        "line 4: 3 fields where the header has 2"
    )


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"text_column": "n"}, "column 'n' holds int64, not text"),
        ({"prompt_column": "front"}, "prompt_column and answer_column go together"),
        ({"messages_column": "m", "prompt_column": "front"}, "not both"),
        ({"text_column": " "}, "option text_column is empty"),
        ({"messages_column": "front"}, "column 'front' holds string, not lists of turns"),
    ],
)
def test_options_that_do_not_fit_the_table_are_refused(tmp_path: Path, options: dict, reason: str):
    pq.write_table(CARDS.append_column("n", pa.array([1, 2, 3])), tmp_path / "c.parquet")
    with pytest.raises(DataError, match=reason):
        read(tmp_path / "c.parquet", **options)


def test_unreadable_files_are_named(tmp_path: Path):
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"fake.parquet cannot be read as PARQUET"):
        read(tmp_path / "fake.parquet")
    (tmp_path / "latin1.csv").write_bytes(b"text\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1.csv cannot be read as CSV: .*invalid UTF8"):
        read(tmp_path / "latin1.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty.csv cannot be read as CSV: Empty CSV file"):
        read(tmp_path / "empty.csv")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt is not a table file"):
        read(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="holds no rows"):
        pq.write_table(CARDS.slice(0, 0), tmp_path / "none.parquet")
        read(tmp_path / "none.parquet", text_column="front")


def test_a_save_to_disk_state_naming_a_missing_file_is_refused(tmp_path: Path):
    folder = save_to_disk(tmp_path / "saved", CARDS)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "gone.arrow"}]}))
    with pytest.raises(DataError, match="state.json names gone.arrow, which is not in"):
        read(folder, text_column="back")


def test_null_cells_are_counted_and_left_out_with_a_warning(tmp_path: Path):
    pq.write_table(pa.table({"q": ["1+1", None, "2+2"], "a": ["2", "3", "4"]}), tmp_path / "n.parquet")
    report = Report()
    got = read(tmp_path / "n.parquet", report, prompt_column="q", answer_column="a")
    assert got == [Pair("1+1", "2", "n.parquet"), Pair("2+2", "4", "n.parquet")]
    assert report.counts["rows_with_null"] == 1 and len(report.warnings) == 1
    clean = Report()
    assert read(tmp_path / "n.parquet", clean, text_column="a") == [
        Text(v, source="n.parquet") for v in "234"
    ]
    assert clean.warnings == []


def test_a_table_prepares_as_pairs_without_chat_markers(tmp_path: Path):
    pq.write_table(CARDS, tmp_path / "c.parquet")
    ds = Store(tmp_path / "prepared").prepare(
        discover()["table"],
        tmp_path,
        "c.parquet",
        packing="pairs",
        options={"prompt_column": "front", "answer_column": "back", "val_fraction": "0"},
    )
    assert not ds.meta["masked"] and ds.mask("train") is None
    assert ds.tokenizer().specials == ["<|endoftext|>"]
    rows = np.asarray(ds.rows("train"))
    assert (
        len(rows) == 3 and ds.tokenizer().decode(ds.tokens("train")[: rows[0, 2]]) == "Hunddog<|endoftext|>"
    )
