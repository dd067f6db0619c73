"""The chat template: the text of a conversation, and which of its segments take loss."""

from __future__ import annotations

import pytest

from data_service.chat_template import Turn, marker_in, render, without_markers
from data_service.modules.base import Segment

TURNS = [
    Turn("system", "Be brief."),
    Turn("user", "Hi"),
    Turn("assistant", "Hello."),
    Turn("user", "Bye"),
    Turn("assistant", "Ciao."),
]


def test_assistant_turns_take_loss_with_their_end_of_turn():
    chat = render(TURNS, "assistant")
    assert chat.segments == (
        Segment("<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>", False),
        Segment("Hello.<|end|>", True),
        Segment("<|user|>Bye<|end|><|assistant|>", False),
        Segment("Ciao.<|end|>", True),
        Segment("<|endoftext|>", False),
    )
    assert chat.prompt == "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>"


def test_all_takes_loss_everywhere_and_keeps_the_same_text_and_prompt():
    chat = render(TURNS, "all")
    assert all(s.trained for s in chat.segments)
    assert chat.text == render(TURNS, "assistant").text
    assert chat.text.endswith("Ciao.<|end|><|endoftext|>")
    assert chat.prompt == render(TURNS, "assistant").prompt


def test_a_conversation_without_reply_takes_no_loss_under_assistant():
    chat = render([Turn("user", "Anyone?")], "assistant")
    assert chat.segments == (Segment("<|user|>Anyone?<|end|><|endoftext|>", False),)


def test_markers_are_found_and_taken_out():
    assert marker_in("fine text <3") is None
    assert marker_in("a <|user|> b <|end|>") == "<|user|>"
    assert without_markers(render(TURNS, "assistant").text) == "Be brief.HiHello.ByeCiao."


def test_unknown_train_on_is_refused():
    with pytest.raises(ValueError, match="train_on must be one of assistant, all"):
        render(TURNS, "user")
