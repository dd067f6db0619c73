"""The ``alpaca`` module: instruction records, ``{"instruction", "input", "output"}``, as a JSON array
(the shape the Alpaca data was published in) or as JSON Lines.

Each record becomes a one-question conversation of the chat template: the user turn is the instruction,
then (when there is one) a blank line and the input; the assistant turn is the output, and loss is
taken on it. An optional ``system`` text opens the conversation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from data_service.chat_template import MARKERS, Turn, marker_in, render
from data_service.errors import DataError
from data_service.modules.base import Chat, DataModule, Option, Report
from data_service.modules.chat import train_on_option
from data_service.modules.jsonl import MAX_REPORTED, json_object, parsed_lines

# A JSON array is parsed whole; past this, JSON Lines (read line by line) is the way.
MAX_ARRAY_BYTES = 256 << 20

T = TypeVar("T")


class AlpacaModule(DataModule):
    name = "alpaca"
    description = (
        'Instruction records {"instruction", "input", "output"}: a JSON array or JSON Lines; each is a '
        "question and answer in the chat template, with loss on the answer."
    )
    options = (
        Option("instruction_field", "Key of the instruction.", "instruction"),
        Option("input_field", "Key of the optional input that follows the instruction.", "input"),
        Option("output_field", "Key of the answer.", "output"),
        Option(
            "train_on", "Where loss is taken: 'assistant' (the answer) or 'all' (every token).", "assistant"
        ),
    )

    def special_tokens(self, path: Path | None, options: Mapping[str, str]) -> tuple[str, ...]:
        return MARKERS

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Chat]:
        assert path is not None
        train_on = train_on_option(options)
        keys = options["instruction_field"], options["input_field"], options["output_field"]
        for turns in _records(path, lambda obj: instruction_turns(obj, *keys), report):
            report.count("instructions")
            yield render(turns, train_on)


def _records(path: Path, parse: Callable[[dict[str, Any]], T], report: Report) -> Iterator[T]:
    """The file's records, from a JSON array or from JSON Lines, whichever it holds."""
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a .json or .jsonl file")
    if _starts_with_bracket(path):
        yield from array_records(path, parse)
    else:
        yield from parsed_lines(path, lambda line: parse(json_object(line)), report)


def _starts_with_bracket(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def array_records(path: Path, parse: Callable[[dict[str, Any]], T]) -> Iterator[T]:
    """Each object of the JSON array in ``path`` through ``parse``; bad records are raised together,
    each named by its number and the line it starts on."""
    if path.stat().st_size > MAX_ARRAY_BYTES:
        raise DataError(
            f"{path} is a JSON array over {MAX_ARRAY_BYTES >> 20} MiB; write it as JSON Lines (one record "
            "a line), which is read as it streams"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}") from None
    decoder = json.JSONDecoder()
    bad: list[str] = []
    parsed: list[T] = []
    num_bad = 0
    line, seen = 1, 0  # the line of offset ``seen``, counted as the parse moves on
    at = _skip_space(text, text.index("[") + 1)
    while text[at : at + 1] != "]" or parsed or bad:
        line, seen = line + text.count("\n", seen, at), at
        try:
            obj, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path} is not a valid JSON array: {e.msg} at line {e.lineno}, column {e.colno}"
            ) from None
        number = len(parsed) + num_bad + 1
        try:
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            parsed.append(parse(obj))
        except ValueError as e:
            num_bad += 1
            if len(bad) < MAX_REPORTED:
                bad.append(f"record {number} (line {line}): {e}")
        at = _skip_space(text, at)
        if text[at : at + 1] == ",":
            at = _skip_space(text, at + 1)
        elif text[at : at + 1] == "]" and not text[at + 1 :].strip():
            break
        else:
            line += text.count("\n", seen, at)
            raise DataError(
                f"{path} is not a valid JSON array: expected ',' or ']' after record {number}, at line {line}"
            )
    if bad:
        more = f" (and {num_bad - len(bad)} more)" if num_bad > len(bad) else ""
        raise DataError(f"{path} has {num_bad} bad record(s): {'; '.join(bad)}{more}")
    if not parsed:
        raise DataError(f"{path} is an empty JSON array")
    yield from parsed


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def instruction_turns(
    obj: dict[str, Any], instruction_key: str, input_key: str, output_key: str
) -> list[Turn]:
    """One record as the turns of a conversation; ValueError says what is wrong with it."""
    instruction, extra, output = obj.get(instruction_key), obj.get(input_key), obj.get(output_key)
    system = obj.get("system")
    for key, value, optional in (
        (instruction_key, instruction, False),
        (input_key, extra, True),
        (output_key, output, False),
        ("system", system, True),
    ):
        if value is None and not optional:
            raise ValueError(f"has no {key!r} (keys present: {', '.join(map(repr, obj)) or 'none'})")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
        if isinstance(value, str) and (marker := marker_in(value)):
            raise ValueError(f"{key!r} spells out the template marker {marker!r}, which reads as that token")
    question = f"{instruction}\n\n{extra}" if extra else instruction
    turns = [Turn("system", system)] if system else []
    return [*turns, Turn("user", question), Turn("assistant", output)]  # type: ignore[arg-type]
