"""Finding the corpus passages built from val examples, which would hand a val answer to the model.

Text is compared as words: case-folded runs of letters and digits (``\\w+``), so case, whitespace and
punctuation do not hide a copy. A passage is built from val data when it holds some val example's
prompt and that example's answer, each as a run of consecutive words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"\w+")
# Val prompts are looked up by their first few words; the rest of a longer prompt is then compared.
HEAD_WORDS = 8


def words(text: str) -> list[str]:
    return WORD.findall(text.casefold())


def joined(ws: list[str]) -> str:
    """Words as one string with a space at each end, so ``joined(a) in joined(b)`` is a run of words."""
    return f" {' '.join(ws)} "


def holds(haystack: list[str], needle: list[str]) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as a run of consecutive words."""
    return joined(needle) in joined(haystack)


class ValPairs:
    """The val examples' prompts and answers, as words, indexed by the head of the prompt."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._by_head: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for prompt, answer in pairs:
            prompt_words = words(prompt)
            if prompt_words:  # a prompt of punctuation alone cannot be found in a passage
                head = tuple(prompt_words[:HEAD_WORDS])
                self._by_head.setdefault(head, []).append((joined(prompt_words), joined(words(answer))))
        self._head_lengths = sorted({len(h) for h in self._by_head})

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_head.values())

    def built_from_val(self, passage_words: list[str]) -> bool:
        """Whether the passage holds some val example's prompt and its answer."""
        if not self._by_head:
            return False
        text = joined(passage_words)
        for i in range(len(passage_words)):
            for length in self._head_lengths:
                for prompt, answer in self._by_head.get(tuple(passage_words[i : i + length]), ()):
                    if prompt in text and answer in text:
                        return True
        return False
