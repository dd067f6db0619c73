"""The ``mix`` module: several sources in one dataset, each file read by the module its kind needs.

The source is a folder; option ``glob`` picks files in it (``*.apkg``, ``decks/**/*.apkg``; default:
every file). ``.apkg`` decks go to ``anki``, ``.txt``/``.md`` to ``text``, tables (and Hugging Face
``save_to_disk`` folders) to ``table``; a ``.jsonl`` or ``.json`` file goes to ``chat``, ``alpaca`` or
``jsonl`` after the keys of its first record. Each example keeps the file it came from, so the
dataset's statistics count examples and tokens per source.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from data_service.chat_template import MARKERS
from data_service.errors import DataError
from data_service.modules.alpaca import AlpacaModule
from data_service.modules.anki import AnkiModule
from data_service.modules.base import DataModule, Example, Option, Report
from data_service.modules.chat import SHAPES, ChatModule
from data_service.modules.jsonl import JsonlModule
from data_service.modules.table import FORMATS, TableModule
from data_service.modules.text import SUFFIXES, TextModule

READERS: dict[str, DataModule] = {
    m.name: m
    for m in (AnkiModule(), TextModule(), TableModule(), ChatModule(), AlpacaModule(), JsonlModule())
}
# Options of the readers that mix passes on (the rest keep their defaults).
PASSED = ("train_on", "text_column", "prompt_column", "answer_column", "messages_column")
PEEK_BYTES = 1 << 16


class MixModule(DataModule):
    name = "mix"
    description = (
        "Several sources in one dataset: the files of a folder (option glob picks them), each read by "
        "the module of its kind (apkg, txt/md, jsonl/json, csv/tsv/parquet/arrow); stats count per source."
    )
    options = (
        Option("glob", "Which files of the folder to read, e.g. '*.apkg' or 'decks/**/*.apkg'.", "*"),
        Option("train_on", "For conversations and instructions: 'assistant' or 'all'.", "assistant"),
        Option("text_column", "For tables: the column of text.", "text"),
        Option("prompt_column", "For tables: the column of prompts (with answer_column).", ""),
        Option("answer_column", "For tables: the column of answers.", ""),
        Option("messages_column", "For tables: the column of conversations.", ""),
    )

    def special_tokens(self, path: Path | None, options: Mapping[str, str]) -> tuple[str, ...]:
        assert path is not None
        templated = any(
            module.special_tokens(file, _options(module, options))
            for file, module in plan(path, options["glob"])[0]
        )
        return MARKERS if templated else ()

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Example]:
        assert path is not None
        files, skipped = plan(path, options["glob"])
        if skipped:
            report.count("files_skipped", len(skipped))
            more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            report.warn(
                f"{len(skipped)} files the glob picked are of no kind a module reads and were left out "
                f"({', '.join(skipped[:3])}{more})."
            )
        for file, module in files:
            label = file.relative_to(path).as_posix()
            report.count(f"module:{module.name}")
            for example in module.read(file, _options(module, options), report):
                yield dataclasses.replace(example, source=label)


def _options(module: DataModule, options: Mapping[str, str]) -> dict[str, str]:
    """The reader's own options: its defaults, with the ones mix passes on."""
    own = {o.name: o.default for o in module.options}
    return own | {k: options[k] for k in PASSED if k in own}


def plan(folder: Path, pattern: str) -> tuple[list[tuple[Path, DataModule]], list[str]]:
    """The files ``pattern`` picks in ``folder``, each with the module that reads it (sorted), and the
    names of those no module reads."""
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder: module mix reads the files of one (option glob picks them)"
        )
    pattern = pattern.strip() or "*"
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise DataError(f"option glob {pattern!r} must stay inside the folder: no absolute path, no '..'")
    inside = folder.resolve()
    found, skipped = [], []
    for item in sorted(folder.glob(pattern)):
        if not item.resolve().is_relative_to(inside):
            raise DataError(f"{item} is a symbolic link that leads out of {folder}")
        module = reader_of(item)
        if module is not None:
            found.append((item, module))
        elif item.is_file():
            skipped.append(item.relative_to(folder).as_posix())
    if not found:
        also = f" (it matched only {', '.join(skipped[:5])}, which no module reads)" if skipped else ""
        raise DataError(f"option glob {pattern!r} picks no file a module reads in {folder}{also}")
    return found, skipped


def reader_of(item: Path) -> DataModule | None:
    """The module for a file (or a save_to_disk folder), or None for anything else."""
    if item.is_dir():
        saved = (item / "state.json").is_file() or (item / "dataset_dict.json").is_file()
        return READERS["table"] if saved else None
    suffix = item.suffix.lower()
    if suffix == ".apkg":
        return READERS["anki"]
    if suffix in SUFFIXES:
        return READERS["text"]
    if suffix in FORMATS:
        return READERS["table"]
    if suffix in (".jsonl", ".json"):
        return READERS[_json_kind(item)]
    return None


def _json_kind(file: Path) -> str:
    """chat, alpaca or jsonl, by the keys of the file's first record (a JSON array is alpaca's)."""
    with file.open("rb") as f:
        head = f.read(PEEK_BYTES).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        return "alpaca"
    first = head.split("\n", 1)[0]
    try:
        keys = json.loads(first)
    except json.JSONDecodeError:
        return "jsonl"  # its reader says what is wrong with the line
    if isinstance(keys, dict) and any(k in keys for k in SHAPES):
        return "chat"
    if isinstance(keys, dict) and "instruction" in keys:
        return "alpaca"
    return "jsonl"
