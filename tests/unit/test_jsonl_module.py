"""The jsonl module: documents or pairs per line; bad lines are reported with their numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_service.errors import DataError
from data_service.modules.base import Pair, Report, Text
from data_service.modules.jsonl import JsonlModule

DEFAULTS = {"text_field": "text", "prompt_field": "prompt", "completion_field": "completion"}


def read(path: Path, **options: str) -> list:
    return list(JsonlModule().read(path, DEFAULTS | options, Report()))


def test_documents_and_pairs(tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"text": "A document."}\n\n{"prompt": "Q: 1+1?", "completion": " 2", "extra": 1}\n{"text": "naïve"}',
        encoding="utf-8",
    )
    assert read(path) == [Text("A document."), Pair("Q: 1+1?", " 2"), Text("naïve")]


def test_other_field_names(tmp_path: Path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"q": "Why?", "a": "Because."}\n', encoding="utf-8")
    assert read(path, prompt_field="q", completion_field="a") == [Pair("Why?", "Because.")]


def test_bad_lines_are_all_reported_with_numbers(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    lines = [
        '{"text": "fine"}',
        "{not json",
        '["a", "list"]',
        '{"prompt": "no completion"}',
        '{"text": 5}',
        '{"title": "none of the keys"}',
        '{"text": "fine again"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path} has 5 bad line(s): line 2: not valid JSON")
    for expected in (
        "line 3: expected a JSON object, got list",
        "line 4: 'prompt' and 'completion' must both be strings",
        "line 5: 'text' must be a string, got int",
        "line 6: has none of the keys",
    ):
        assert expected in message


def test_more_bad_lines_than_listed(tmp_path: Path):
    path = tmp_path / "worse.jsonl"
    path.write_text("oops\n" * 9, encoding="utf-8")
    with pytest.raises(DataError, match=r"has 9 bad line\(s\): line 1: .*line 5: .* \(and 4 more\)"):
        read(path)


def test_invalid_utf8_and_empty(tmp_path: Path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl is not valid UTF-8: byte 0xe9 at offset 28"):
        read(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl holds no JSON lines"):
        read(empty)
