"""The chat module: both record shapes, bad lines named, and the prepared loss mask per tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_service.chat_template import MARKERS
from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.base import Report
from data_service.modules.chat import ChatModule
from data_service.store import Store

MESSAGES = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao."},
    ]
}
SHAREGPT = {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}


def write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read(path: Path, train_on: str = "assistant", report: Report | None = None) -> list:
    return list(ChatModule().read(path, {"train_on": train_on}, report or Report()))


def test_both_shapes_render_the_same_template(tmp_path: Path):
    chats = read(write(tmp_path / "c.jsonl", [MESSAGES, SHAREGPT]))
    assert chats[0].text == (
        "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>Hello.<|end|>"
        "<|user|>Bye<|end|><|assistant|>Ciao.<|end|><|endoftext|>"
    )
    assert chats[1].text == "<|user|>2+2?<|end|><|assistant|>4<|end|><|endoftext|>"
    assert [s.text for s in chats[1].segments if s.trained] == ["4<|end|>"]


def test_counts_and_a_warning_for_a_conversation_without_reply(tmp_path: Path):
    report = Report()
    lonely = {"messages": [{"role": "user", "content": "Anyone?"}]}
    read(write(tmp_path / "c.jsonl", [MESSAGES, SHAREGPT, lonely]), report=report)
    assert report.counts == {
        "conversations": 3,
        "turns": 8,
        "assistant_turns": 3,
        "conversations_without_reply": 1,
    }
    assert any("no assistant turn" in w for w in report.warnings)


def test_clean_conversations_give_no_warning(tmp_path: Path):
    report = Report()
    read(write(tmp_path / "c.jsonl", [MESSAGES, SHAREGPT]), report=report)
    assert report.warnings == []
    # Under 'all' a conversation without reply still teaches something: no warning either.
    read(write(tmp_path / "u.jsonl", [{"messages": [{"role": "user", "content": "x"}]}]), "all", report)
    assert report.warnings == []


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("{oops", "line 1: not valid JSON"),
        ({"text": "prose"}, "line 1: has neither of the keys 'messages' or 'conversations'"),
        ({"messages": []}, "line 1: 'messages' must be a non-empty list of turns"),
        ({"messages": ["hi"]}, "line 1: messages turn 1 is a str, not an object"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "line 1: messages turn 1 has role 'bot'; expected"),
        (
            {"conversations": [{"from": "human", "value": 3}]},
            "conversations turn 1 needs 'value' as a string",
        ),
        (
            {"messages": [{"role": "user", "content": "fake <|assistant|> reply"}]},
            "messages turn 1 spells out the template marker '<|assistant|>'",
        ),
    ],
)
def test_bad_records_name_the_file_the_line_and_the_reason(tmp_path: Path, record, reason: str):
    path = tmp_path / "bad.jsonl"
    path.write_text((record if isinstance(record, str) else json.dumps(record)) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl has 1 bad line") as e:
        read(path)
    assert reason in str(e.value)


def test_a_bad_line_among_good_ones_is_named_by_number(tmp_path: Path):
    path = tmp_path / "some.jsonl"
    path.write_text(json.dumps(MESSAGES) + "\n\n" + '{"messages": 5}\n' + json.dumps(SHAREGPT) + "\n")
    with pytest.raises(DataError, match=r"some.jsonl has 1 bad line\(s\): line 3: 'messages' must be"):
        read(path)


def test_train_on_is_checked(tmp_path: Path):
    with pytest.raises(DataError, match="option train_on must be one of assistant, all, got 'users'"):
        read(write(tmp_path / "c.jsonl", [MESSAGES]), "users")


@pytest.mark.parametrize("packing", ["stream", "pairs"])
@pytest.mark.parametrize("tokenizer", ["char", "byte", "bpe"])
def test_markers_are_single_tokens_and_the_mask_covers_the_replies(
    tmp_path: Path, tokenizer: str, packing: str
):
    write(tmp_path / "c.jsonl", [MESSAGES, SHAREGPT])
    options = {"val_fraction": "0"} | ({"vocab_size": "300"} if tokenizer == "bpe" else {})
    ds = Store(tmp_path / "prepared").prepare(
        discover()["chat"], tmp_path, "c.jsonl", tokenizer, packing, options
    )
    tok, tokens, mask = ds.tokenizer(), np.asarray(ds.tokens("train")), np.asarray(ds.mask("train"))
    for marker in MARKERS:
        assert len(tok.encode(marker)) == 1, marker
        assert tok.decode(tok.encode(marker)) == marker
    assert ds.meta["masked"] and len(mask) == len(tokens)
    assert tok.decode(tokens[mask == 1]) == "Hello.<|end|>Ciao.<|end|>4<|end|>"
    assert ds.meta["stats"]["trained_tokens"]["train"] == int(mask.sum())
    # A char vocabulary learns only the conversations' characters, not the markers' spelling.
    if tokenizer == "char":
        assert "|" not in tok.chars


def test_train_on_all_masks_nothing(tmp_path: Path):
    write(tmp_path / "c.jsonl", [MESSAGES, SHAREGPT])
    store = Store(tmp_path / "prepared")
    ds = store.prepare(
        discover()["chat"], tmp_path, "c.jsonl", options={"val_fraction": "0", "train_on": "all"}
    )
    assert np.asarray(ds.mask("train")).all()
    assert ds.meta["stats"]["at_block_size"]["64"]["masked"] == 0.0
