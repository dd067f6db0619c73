"""Which targets of a chat's turns take loss, measured on the batches the trainer receives.

The data service says where it put loss; this checks what arrives. Within a row, the role of each
position is that of the last role marker before it (``<|endoftext|>`` ends the conversation), and the
target at position t is the input at t + 1 whatever the mask says, so a masked target (-1) still has a
known token and turn. Counted on train batches only: they are what the model learns from. A few rows
are kept whole, so the report can look for markers spelled out in ordinary characters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from data_service.chat_template import ASSISTANT, END_OF_TEXT, END_OF_TURN, SYSTEM, USER

SAMPLE_ROWS = 32  # rows kept for the report to decode
_SYSTEM, _USER, _ASSISTANT = 1, 2, 3
ORDER = (SYSTEM, USER, ASSISTANT, END_OF_TURN, END_OF_TEXT)  # the fields of Markers


@dataclass(frozen=True)
class Markers:
    """The token ids of the chat template's markers in the dataset's vocabulary."""

    system: int
    user: int
    assistant: int
    end_of_turn: int
    end_of_text: int

    @classmethod
    def of(cls, single: dict[str, int]) -> Markers | None:
        """The markers, if every one of them is a single token (a chat tokenizer); None otherwise."""
        return cls(*(single[m] for m in ORDER)) if len(single) == len(ORDER) else None


def single_tokens(encode: Callable[[str], list[int]]) -> dict[str, int]:
    """The id of each marker the tokenizer keeps as one token (a pairs dataset's end token, say)."""
    ids = {}
    for marker in ORDER:
        try:
            encoded = encode(marker)
        except Exception:  # a tokenizer that cannot even spell the marker has no such token
            continue
        if len(encoded) == 1:
            ids[marker] = encoded[0]
    return ids


@dataclass
class TurnCounts:
    reply_targets: int = 0  # targets inside assistant turns: their content and closing <|end|>
    reply_trained: int = 0
    reply_ends: int = 0  # targets that are an assistant turn's closing <|end|>
    reply_ends_trained: int = 0
    prompt_targets: int = 0  # targets inside system and user turns, their <|end|> included
    prompt_trained: int = 0


class ChatTurns:
    """Counts, per turn kind, the targets that take loss; ``markers`` None: not a chat tokenizer."""

    def __init__(self, single: dict[str, int] | None = None) -> None:
        self.single = single or {}  # every marker that is one token, chat tokenizer or not
        self.markers = Markers.of(self.single)
        self.counts = TurnCounts()
        self.sample: list[list[int]] = []

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(self.sample) < SAMPLE_ROWS:
            self.sample += x[: SAMPLE_ROWS - len(self.sample)].tolist()
        m = self.markers
        if m is None or x.size(1) < 2:
            return
        kind = (x == m.system) * _SYSTEM + (x == m.user) * _USER + (x == m.assistant) * _ASSISTANT
        boundary = (kind > 0) | (x == m.end_of_text)
        positions = torch.arange(x.size(1)).expand_as(x)
        last = torch.where(boundary, positions, -1).cummax(dim=1).values
        role = torch.where(last >= 0, kind.gather(1, last.clamp(min=0)), 0)[:, :-1]
        target = x[:, 1:]  # the token each target position predicts, masked or not
        starts_turn = (target == m.system) | (target == m.user) | (target == m.assistant)
        inside = ~(starts_turn | (target == m.end_of_text))
        trained = y[:, :-1] != -1
        reply = inside & (role == _ASSISTANT)
        reply_end = reply & (target == m.end_of_turn)
        prompt = inside & ((role == _SYSTEM) | (role == _USER))
        c = self.counts
        c.reply_targets += int(reply.sum())
        c.reply_trained += int((reply & trained).sum())
        c.reply_ends += int(reply_end.sum())
        c.reply_ends_trained += int((reply_end & trained).sum())
        c.prompt_targets += int(prompt.sum())
        c.prompt_trained += int((prompt & trained).sum())

    def summary(self) -> dict[str, Any]:
        return {"chat_tokenizer": self.markers is not None, "marker_ids": self.single, **asdict(self.counts)}

    def state_dict(self) -> dict[str, Any]:
        return {"counts": asdict(self.counts), "sample": self.sample}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        known = {f.name for f in fields(TurnCounts)}
        self.counts = TurnCounts(**{k: v for k, v in state["counts"].items() if k in known})
        self.sample = state["sample"]
