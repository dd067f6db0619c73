"""The alpaca module: instruction records from a JSON array or JSON Lines, loss on the answer only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.alpaca import AlpacaModule
from data_service.modules.base import Report
from data_service.store import Store

DEFAULTS = {"instruction_field": "instruction", "input_field": "input", "output_field": "output"}
RECORDS = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue"},
    {"instruction": "Say hi.", "output": "Hi!", "system": "Be kind."},
]
TEXTS = [
    "<|user|>Add the numbers.\n\n2 and 3<|end|><|assistant|>5<|end|><|endoftext|>",
    "<|user|>Name a colour.<|end|><|assistant|>Blue<|end|><|endoftext|>",
    "<|system|>Be kind.<|end|><|user|>Say hi.<|end|><|assistant|>Hi!<|end|><|endoftext|>",
]


def read(path: Path, **options: str) -> list:
    return list(AlpacaModule().read(path, DEFAULTS | {"train_on": "assistant"} | options, Report()))


def test_a_json_array_and_json_lines_give_the_same_conversations(tmp_path: Path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps(RECORDS, indent=2), encoding="utf-8")
    lines = tmp_path / "a.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    assert [c.text for c in read(array)] == TEXTS == [c.text for c in read(lines)]
    assert [[s.text for s in c.segments if s.trained] for c in read(array)] == [
        ["5<|end|>"],
        ["Blue<|end|>"],
        ["Hi!<|end|>"],
    ]


def test_other_field_names(tmp_path: Path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"q": "Why?", "a": "Because."}\n', encoding="utf-8")
    chats = read(path, instruction_field="q", output_field="a")
    assert chats[0].text == "<|user|>Why?<|end|><|assistant|>Because.<|end|><|endoftext|>"


def test_bad_records_of_an_array_are_named_by_number_and_line(tmp_path: Path):
    path = tmp_path / "bad.json"
    records = [RECORDS[0], {"instruction": "No answer"}, "text", {"instruction": 3, "output": "x"}]
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    with pytest.raises(DataError) as e:
        read(path)
    message = str(e.value)
    assert "bad.json has 3 bad record(s)" in message
    assert "record 2 (line 7): has no 'output' (keys present: 'instruction')" in message
    assert "record 3 (line 10): expected a JSON object, got str" in message
    assert "record 4 (line 11): 'instruction' must be a string, got int" in message


def test_bad_lines_of_json_lines_are_named_by_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n{broken\n" + '{"instruction": "x", "output": "<|end|>"}\n')
    with pytest.raises(DataError) as e:
        read(path)
    assert "bad.jsonl has 2 bad line(s): line 2: not valid JSON" in str(e.value)
    assert "line 3: 'output' spells out the template marker '<|end|>'" in str(e.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[]", "is an empty JSON array"),
        ('[{"instruction": "a", "output": "b"} {"x": 1}]', "expected ',' or ']' after record 1, at line 1"),
        (
            '[{"instruction": "a", "output": "b"},\n{"instruction": ',
            "not a valid JSON array: Expecting value at line 2",
        ),
        ('[{"instruction": "a", "output": "b"}] trailing', "expected ',' or ']' after record 1"),
    ],
)
def test_a_broken_array_is_refused_with_where(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match="broken.json") as e:
        read(path)
    assert reason in str(e.value)


def test_prepared_answers_are_the_only_targets(tmp_path: Path):
    (tmp_path / "a.json").write_text(json.dumps(RECORDS), encoding="utf-8")
    ds = Store(tmp_path / "prepared").prepare(
        discover()["alpaca"], tmp_path, "a.json", packing="pairs", options={"val_fraction": "0"}
    )
    tokens, mask = np.asarray(ds.tokens("train")), np.asarray(ds.mask("train"))
    assert sorted(ds.tokenizer().decode(tokens[mask == 1]).split("<|end|>")) == ["", "5", "Blue", "Hi!"]
