"""Cloze deletions: ``{{c1::answer}}`` or ``{{c1::answer::hint}}``; a note gives one pair per number."""

from __future__ import annotations

import re

CLOZE = re.compile(r"\{\{c(\d+)::(.*?)(?:::(.*?))?\}\}", re.DOTALL)


def cloze_numbers(text: str) -> list[int]:
    return sorted({int(m.group(1)) for m in CLOZE.finditer(text)})


def cloze_pair(text: str, number: int) -> tuple[str, str]:
    """(prompt, answer) HTML for deletion ``number``: it is hidden as ``[...]`` (or ``[hint]``) and the
    other deletions show their text, as Anki shows the card."""
    answers: list[str] = []

    def replace(m: re.Match[str]) -> str:
        if int(m.group(1)) != number:
            return m.group(2)
        answers.append(m.group(2))
        return f"[{m.group(3)}]" if m.group(3) else "[...]"

    prompt = CLOZE.sub(replace, text)
    return prompt, ", ".join(answers)
