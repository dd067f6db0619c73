"""The ``chat`` module: JSON Lines of conversations, rendered with the chat template.

Each line is one conversation, in either of the two shapes people have:
``{"messages": [{"role": "user", "content": ...}, ...]}`` (roles system, user, assistant) or ShareGPT's
``{"conversations": [{"from": "human", "value": ...}, ...]}`` (system, human, gpt). Turns may go on for
as long as the conversation does; option ``train_on`` says which of them take loss (see
``data_service.chat_template``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from data_service.chat_template import MARKERS, TRAIN_ON, Turn, marker_in, render, role_order_problem
from data_service.errors import DataError
from data_service.modules.base import Chat, DataModule, Option, Report
from data_service.modules.jsonl import json_object, parsed_lines

# Each record shape: its list's key, and the keys of a turn's role and text.
SHAPES = {"messages": ("role", "content"), "conversations": ("from", "value")}
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


class ChatModule(DataModule):
    name = "chat"
    description = (
        'Conversations, one JSON object per line: {"messages": [{"role", "content"}, ...]} or '
        'ShareGPT\'s {"conversations": [{"from", "value"}, ...]}; loss on the assistant turns.'
    )
    options = (
        Option(
            "train_on",
            "Where loss is taken: 'assistant' (each assistant turn) or 'all' (every token).",
            "assistant",
        ),
    )

    def special_tokens(self, path: Path | None, options: Mapping[str, str]) -> tuple[str, ...]:
        return MARKERS

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Chat]:
        assert path is not None
        train_on = train_on_option(options)
        for turns in parsed_lines(path, parse_conversation, report):
            count_turns(turns, train_on, report)
            yield render(turns, train_on)


def train_on_option(options: Mapping[str, str]) -> str:
    value = options["train_on"].strip().lower()
    if value not in TRAIN_ON:
        raise DataError(f"option train_on must be one of {', '.join(TRAIN_ON)}, got {options['train_on']!r}")
    return value


def count_turns(turns: list[Turn], train_on: str, report: Report) -> None:
    """Count the conversation, its turns and any problem with their order (the fit report judges the
    shares); one with no reply has nothing to learn under 'assistant'."""
    report.count("conversations")
    report.count("turns", len(turns))
    if train_on == "all":
        report.count("conversations_trained_on_all")
    if problem := role_order_problem(turns):
        report.count("conversations_with_role_problems")
        report.count(f"role_order_{problem}")
    replies = sum(t.role == "assistant" for t in turns)
    report.count("assistant_turns", replies)
    if not replies and train_on == "assistant":
        report.count("conversations_without_reply")
        report.warn(
            "Some conversations have no assistant turn, so with train_on 'assistant' no loss is taken "
            "on them (the stats' module counts say how many): add replies, or use train_on 'all'."
        )


def parse_conversation(line: str) -> list[Turn]:
    """One line's conversation; ValueError says what is wrong with it."""
    obj = json_object(line)
    shape = next((key for key in SHAPES if key in obj), None)
    if shape is None:
        raise ValueError(f"has neither of the keys {' or '.join(map(repr, SHAPES))}")
    return conversation(obj[shape], shape)


def conversation(turns: Any, shape: str) -> list[Turn]:
    """The turns of a ``messages`` or ``conversations`` list, checked one by one."""
    role_key, text_key = SHAPES[shape]
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{shape!r} must be a non-empty list of turns")
    out = []
    for number, turn in enumerate(turns, start=1):
        at = f"{shape} turn {number}"
        if not isinstance(turn, dict):
            raise ValueError(f"{at} is a {type(turn).__name__}, not an object")
        role, text = turn.get(role_key), turn.get(text_key)
        if role not in ROLES:
            raise ValueError(f"{at} has {role_key} {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(text, str):
            raise ValueError(f"{at} needs {text_key!r} as a string, got {type(text).__name__}")
        if marker := marker_in(text):
            raise ValueError(
                f"{at} spells out the template marker {marker!r}, which would read as that token"
            )
        out.append(Turn(ROLES[role], text))
    return out
