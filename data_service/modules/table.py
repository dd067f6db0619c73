"""The ``table`` module: rows of CSV, TSV, Parquet or Arrow files, read locally with ``pyarrow``.

Options name the columns: ``text_column`` (each row a document), ``prompt_column`` and
``answer_column`` (each row a pair), or ``messages_column`` (each row a conversation, rendered with
the chat template). A source is one file, a folder that Hugging Face ``datasets`` wrote with
``save_to_disk`` (``state.json`` names its Arrow files; a ``dataset_dict.json`` folder holds one such
folder per split, and option ``split`` picks one), or any other folder, whose table files are all read.
Files are read in record batches, so a table far bigger than memory streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from data_service.chat_template import MARKERS, render
from data_service.errors import DataError
from data_service.modules.base import DataModule, Example, Option, Pair, Report, Text
from data_service.modules.chat import conversation, count_turns, train_on_option
from data_service.modules.jsonl import MAX_REPORTED

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}
BATCH_ROWS = 4096
CSV_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class Columns:
    """What the options ask of each row: which columns, read as what."""

    kind: str  # "text", "pair" or "chat"
    names: tuple[str, ...]

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Columns:
        messages = options["messages_column"].strip()
        prompt, answer = options["prompt_column"].strip(), options["answer_column"].strip()
        if messages and (prompt or answer):
            raise DataError("give messages_column, or prompt_column and answer_column, not both")
        if messages:
            return cls("chat", (messages,))
        if prompt or answer:
            if not (prompt and answer):
                raise DataError("prompt_column and answer_column go together: give both, or neither")
            return cls("pair", (prompt, answer))
        text = options["text_column"].strip()
        if not text:
            raise DataError("option text_column is empty: name the column of text")
        return cls("text", (text,))


class TableModule(DataModule):
    name = "table"
    description = (
        "Tables: CSV, TSV, Parquet, Arrow files, or a Hugging Face save_to_disk folder, read locally; "
        "a column of text, prompt and answer columns, or a column of chat messages."
    )
    options = (
        Option("text_column", "Column whose cells are documents.", "text"),
        Option("prompt_column", "Column of prompts (with answer_column: each row a pair).", ""),
        Option("answer_column", "Column of answers, trained on.", ""),
        Option("messages_column", "Column of conversations: lists of {role, content} or {from, value}.", ""),
        Option(
            "train_on", "With messages_column: loss on 'assistant' turns or on 'all' tokens.", "assistant"
        ),
        Option("split", "For a save_to_disk folder of several splits: the one to read.", "train"),
    )

    def special_tokens(self, path: Path | None, options: Mapping[str, str]) -> tuple[str, ...]:
        return MARKERS if options["messages_column"].strip() else ()

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Example]:
        assert path is not None
        columns = Columns.from_options(options)
        train_on = train_on_option(options)
        files = table_files(path, options["split"].strip())
        report.count("files", len(files))
        rows = 0
        for file in files:
            label = file.relative_to(path).as_posix() if path.is_dir() else file.name
            for row, values in enumerate(_rows(file, columns), start=1):
                rows += 1
                if example := _example(file, row, columns, values, train_on, label, report):
                    yield example
        if rows == 0:
            raise DataError(f"{path} holds no rows")


def table_files(path: Path, split: str) -> list[Path]:
    """The table files of a source: the file itself, a save_to_disk folder's Arrow files, or every table
    file under a folder (sorted; links that lead out of it are refused)."""
    if not path.is_dir():
        if path.suffix.lower() not in FORMATS:
            raise DataError(f"{path} is not a table file: expected one of {', '.join(FORMATS)}")
        return [path]
    if (path / "dataset_dict.json").is_file():
        splits = _json(path / "dataset_dict.json").get("splits") or []
        if split not in splits:
            raise DataError(
                f"{path} is a save_to_disk folder with splits {', '.join(splits)}; option split is {split!r}"
            )
        return table_files(path / split, split)
    if (path / "state.json").is_file():
        names = [entry.get("filename") for entry in _json(path / "state.json").get("_data_files") or []]
        files = [path / n for n in names if isinstance(n, str) and "/" not in n and n not in ("", "..")]
        if not files or len(files) != len(names):
            raise DataError(f"{path / 'state.json'} names no Arrow files in _data_files")
        for file in files:
            if not file.is_file():
                raise DataError(f"{path / 'state.json'} names {file.name}, which is not in {path}")
        return files
    inside = path.resolve()
    files = []
    for file in sorted(path.rglob("*")):
        if file.suffix.lower() not in FORMATS or not file.is_file():
            continue
        if not file.resolve().is_relative_to(inside):
            raise DataError(f"{file} is a symbolic link that leads out of {path}")
        files.append(file)
    if not files:
        raise DataError(f"{path} is a folder with no table files ({', '.join(FORMATS)}) in it")
    return files


def _json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a JSON object")
    return obj


def _rows(file: Path, columns: Columns) -> Iterator[tuple[Any, ...]]:
    """The wanted columns' values, row by row, reading the file in record batches."""
    try:
        for batch in _batches(file, columns):
            yield from zip(*(batch.column(name).to_pylist() for name in columns.names), strict=True)
    except pa.ArrowException as e:
        raise DataError(f"{file} cannot be read as {FORMATS[file.suffix.lower()].upper()}: {e}") from None


def _batches(file: Path, columns: Columns) -> Iterator[pa.RecordBatch]:
    kind = FORMATS[file.suffix.lower()]
    if kind in ("csv", "tsv"):
        yield from _csv_batches(file, columns, "\t" if kind == "tsv" else ",")
        return
    if kind == "parquet":
        parquet = pq.ParquetFile(file)
        _check_columns(file, parquet.schema_arrow, columns)
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(columns.names))
        return
    with pa.memory_map(str(file)) as source:
        try:
            reader: Any = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # not the file format: the stream format (what save_to_disk writes)
            source.seek(0)
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
        _check_columns(file, reader.schema, columns)
        yield from batches


def _csv_batches(file: Path, columns: Columns, delimiter: str) -> Iterator[pa.RecordBatch]:
    """CSV record batches of the wanted columns, every cell read as text (no type guessing); rows of
    the wrong width are collected and raised together, each with its line."""
    bad: list[str] = []
    num_bad = 0

    def bad_row(row: Any) -> str:
        nonlocal num_bad
        num_bad += 1
        if len(bad) < MAX_REPORTED:
            bad.append(
                f"line {row.number}: {row.actual_columns} fields where the header has {row.expected_columns}"
            )
        return "skip"

    read = pa_csv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES)  # one thread: lines are numbered
    parse = pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=bad_row)
    peek = pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda row: "skip")
    header = pa_csv.open_csv(file, read_options=read, parse_options=peek)
    _check_columns(file, header.schema, columns, typed=False)  # every cell is read as text
    convert = pa_csv.ConvertOptions(
        include_columns=list(columns.names),
        column_types={name: pa.string() for name in columns.names},
        strings_can_be_null=False,
    )
    yield from pa_csv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert)
    if bad:
        more = f" (and {num_bad - len(bad)} more)" if num_bad > len(bad) else ""
        raise DataError(f"{file} has {num_bad} bad row(s): {'; '.join(bad)}{more}")


def _check_columns(file: Path, schema: pa.Schema, columns: Columns, typed: bool = True) -> None:
    """Every wanted column present, and (``typed``) of the type its use needs; a clear error otherwise."""
    for name in columns.names:
        if name not in schema.names:
            raise DataError(
                f"{file} has no column {name!r}; its columns are {', '.join(map(repr, schema.names))} "
                "(name one with the module's options)"
            )
        if not typed:
            continue
        kind = schema.field(name).type
        wanted = (
            pa.types.is_list(kind) or pa.types.is_large_list(kind)
            if columns.kind == "chat"
            else (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))
        )
        if not wanted:
            what = "lists of turns" if columns.kind == "chat" else "text"
            raise DataError(f"{file}: column {name!r} holds {kind}, not {what}")


def _example(
    file: Path, row: int, columns: Columns, values: tuple[Any, ...], train_on: str, label: str, report: Report
) -> Example | None:
    """One row as an example; a row with an empty (null) cell is counted and left out."""
    if any(v is None for v in values):
        report.count("rows_with_null")
        report.warn(
            "Some rows have an empty (null) cell in a column read and were left out (see rows_with_null)."
        )
        return None
    if columns.kind == "text":
        return Text(values[0], source=label)
    if columns.kind == "pair":
        return Pair(values[0], values[1], source=label)
    turns = values[0]
    shape = "conversations" if turns and isinstance(turns[0], dict) and "from" in turns[0] else "messages"
    try:
        parsed = conversation(turns, shape)
    except ValueError as e:
        raise DataError(f"{file}: row {row}, column {columns.names[0]!r}: {e}") from None
    count_turns(parsed, train_on, report)
    return render(parsed, train_on, label)
