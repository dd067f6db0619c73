"""The chat template: how a conversation becomes one example's text, and which of it takes loss.

A conversation of a system prompt, a question and an answer is the example::

    <|system|>Be brief.<|end|><|user|>Capital of France?<|end|><|assistant|>Paris.<|end|><|endoftext|>

Each turn is its role's marker, its content, then the end-of-turn marker ``<|end|>``; ``<|endoftext|>``
closes the example, so in stream packing it is what stands between one conversation and the next. The
markers are special tokens of the dataset's tokenizer: each is one token with the char, byte and bpe
tokenizers alike (they take the ids after the learned vocabulary), never spelled out in characters.

``train_on`` says where loss is taken. ``assistant`` (the default): on every assistant turn's content
and its ``<|end|>`` (the model learns to answer, and to stop), and nowhere else: not on the system or
user turns, not on the role markers, not on ``<|endoftext|>``. ``all``: on every token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from data_service.modules.base import Chat, Segment

SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
END_OF_TURN = "<|end|>"
END_OF_TEXT = "<|endoftext|>"
ROLE_MARKERS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
MARKERS = (END_OF_TEXT, SYSTEM, USER, ASSISTANT, END_OF_TURN)
TRAIN_ON = ("assistant", "all")

_MARKER_RE = re.compile("|".join(map(re.escape, MARKERS)))


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # one of ROLE_MARKERS
    content: str


# What can be wrong with the order of a conversation's turns, each kind with what it costs the model.
ROLE_ORDER_PROBLEMS = {
    "reply_first": "an assistant turn comes before any user turn (a reply to nothing)",
    "late_system": "a system turn comes after the first turn",
    "repeated_role": "two user turns, or two assistant turns, follow each other",
    "ends_unanswered": "the last turn is a user turn no reply follows (nothing to learn from it)",
}


def role_order_problem(turns: Sequence[Turn]) -> str | None:
    """The first kind of ROLE_ORDER_PROBLEMS the conversation has, if any. A conversation with no reply
    at all is counted on its own (``conversations_without_reply``), so it has no order problem here."""
    roles = [t.role for t in turns]
    if "assistant" not in roles:
        return None
    if "system" in roles[1:]:
        return "late_system"
    talk = [r for r in roles if r != "system"]
    if talk[0] == "assistant":
        return "reply_first"
    if any(a == b for a, b in zip(talk, talk[1:], strict=False)):
        return "repeated_role"
    if talk[-1] == "user":
        return "ends_unanswered"
    return None


def marker_in(text: str) -> str | None:
    """The first template marker spelled out in ``text``, if any: it would read as that special token."""
    found = _MARKER_RE.search(text)
    return found.group() if found else None


def without_markers(text: str) -> str:
    """``text`` with the markers taken out: what a tokenizer learns its plain vocabulary from."""
    return _MARKER_RE.sub("", text)


def render(turns: Sequence[Turn], train_on: str, source: str = "") -> Chat:
    """The conversation as template segments; ``train_on`` is one of TRAIN_ON."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    segments: list[Segment] = []
    context: list[str] = []
    for turn in turns:
        context.append(ROLE_MARKERS[turn.role])
        if turn.role == "assistant":
            segments.append(Segment("".join(context), train_on == "all"))
            segments.append(Segment(turn.content + END_OF_TURN, True))
            context = []
        else:
            context += [turn.content, END_OF_TURN]
    context.append(END_OF_TEXT)
    segments.append(Segment("".join(context), train_on == "all"))
    return Chat(tuple(segments), source)
