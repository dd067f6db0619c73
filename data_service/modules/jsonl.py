"""The ``jsonl`` module: one JSON object per line, either ``{"text": ...}`` or ``{"prompt", "completion"}``.

Every bad line is an error, reported with its line number (the first few of them), so a file that is
half broken is fixed rather than half trained on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from data_service.errors import DataError
from data_service.modules.base import DataModule, Example, Option, Pair, Report, Text
from data_service.modules.text import lines

# How many bad lines one error message lists.
MAX_REPORTED = 5
# A line is held whole to parse it; past this it is refused rather than allowed to fill the memory.
MAX_LINE_CHARS = 16 << 20

T = TypeVar("T")


class JsonlModule(DataModule):
    name = "jsonl"
    description = 'JSON Lines: each line {"text": ...} (a document) or {"prompt": ..., "completion": ...}.'
    options = (
        Option("text_field", "Key of a document's text.", "text"),
        Option("prompt_field", "Key of a pair's prompt.", "prompt"),
        Option("completion_field", "Key of a pair's completion.", "completion"),
    )

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Example]:
        assert path is not None
        keys = options["text_field"], options["prompt_field"], options["completion_field"]
        yield from parsed_lines(path, lambda line: parse_line(line, *keys), report)


def parsed_lines(path: Path, parse: Callable[[str], T], report: Report) -> Iterator[T]:
    """Each non-blank line of the JSON Lines file at ``path`` through ``parse``, which raises ValueError
    for a bad one. Bad lines are collected and raised together, naming the file and each line."""
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a .jsonl file")
    bad: list[str] = []
    num_bad = 0
    count = 0
    for number, line in enumerate(_whole_lines(path), start=1):
        if not line.strip():
            report.count("blank_lines")
            continue
        try:
            record = parse(line)
        except ValueError as e:
            num_bad += 1
            if len(bad) < MAX_REPORTED:
                bad.append(f"line {number}: {e}")
            continue
        count += 1
        if not bad:
            yield record
    if bad:
        more = f" (and {num_bad - len(bad)} more)" if num_bad > len(bad) else ""
        raise DataError(f"{path} has {num_bad} bad line(s): {'; '.join(bad)}{more}")
    if count == 0:
        raise DataError(f"{path} holds no JSON lines")


def _whole_lines(path: Path) -> Iterator[str]:
    """Lines up to MAX_LINE_CHARS long (``lines`` cuts long ones into parts); a longer one is an error."""
    parts: list[str] = []
    size, number = 0, 1
    for part in lines(path):
        parts.append(part)
        size += len(part)
        if size > MAX_LINE_CHARS:
            raise DataError(
                f"{path}: line {number} is over {MAX_LINE_CHARS:,} characters long; refused (one JSON "
                "object per line is expected)"
            )
        if part.endswith("\n"):
            yield "".join(parts)
            parts, size, number = [], 0, number + 1
    if parts:
        yield "".join(parts)


def json_object(line: str) -> dict[str, Any]:
    """One line as a JSON object; ValueError says what is wrong with it."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_line(line: str, text_key: str, prompt_key: str, completion_key: str) -> Example:
    """One line as an example; ValueError says what is wrong with it."""
    obj = json_object(line)
    if prompt_key in obj or completion_key in obj:
        prompt, completion = obj.get(prompt_key), obj.get(completion_key)
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise ValueError(f"{prompt_key!r} and {completion_key!r} must both be strings")
        return Pair(prompt, completion)
    if text_key in obj:
        if not isinstance(obj[text_key], str):
            raise ValueError(f"{text_key!r} must be a string, got {type(obj[text_key]).__name__}")
        return Text(obj[text_key])
    raise ValueError(f"has none of the keys {text_key!r}, or {prompt_key!r} and {completion_key!r}")
