"""Control tasks for memory and retrieval, whose learnability is known like ``sort``'s and ``add``'s.

``recall``: key-value pairs are shown, then some keys are asked for; the answer is their values. Only
a model that reads its context can learn it (the values are random), and the ``gap`` distractor pairs
after the ones asked about make it look further back past keys it must not confuse, so it says whether
a model size and block can use context at all, and how far. ``lookup``: made-up facts that sit only in
the module's own corpus, asked for one by one. Asked without retrieval, a val fact was never seen, so
its answer is a guess; with ``retrieval_corpus`` ``builtin`` the fact is in the row's context and the
answer is a copy. Between them, a user can tell a model that cannot read its context from data that
gives it nothing to read.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from data_service.errors import DataError
from data_service.modules.base import DataModule, Option, Pair, Report, positive_int
from data_service.modules.synthetic import MAX_EXAMPLES, NUM_EXAMPLES, SEED, seed_of

KEYS = string.ascii_lowercase
SYLLABLES = ("ba", "de", "fi", "go", "ku", "la", "me", "ni", "po", "ru", "sa", "te", "vi", "wo", "ze", "xu")
MAX_FACTS = len(SYLLABLES) ** 3  # one distinct three-syllable key each


def non_negative_int(options: Mapping[str, str], name: str, maximum: int) -> int:
    try:
        value = int(options[name])
    except ValueError:
        value = -1
    if not 0 <= value <= maximum:
        raise DataError(f"option {name} must be an integer from 0 to {maximum}, got {options[name]!r}")
    return value


class RecallModule(DataModule):
    name = "recall"
    description = (
        "Synthetic: key-value pairs shown, then keys asked for ('a3 k7 m1|k:' → '7'); multi-query "
        "associative recall, with `gap` distractor pairs between the pairs asked about and the question."
    )
    options = (
        Option("num_pairs", "Key-value pairs that may be asked about (keys are distinct letters).", "4"),
        Option("num_queries", "Keys asked for per example; the answer is their values in order.", "1"),
        Option("gap", "Distractor pairs shown after those, before the question: how far back to look.", "0"),
        NUM_EXAMPLES,
        SEED,
    )
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        pairs = positive_int(options, "num_pairs", len(KEYS))
        queries = positive_int(options, "num_queries", pairs)
        gap = non_negative_int(options, "gap", len(KEYS))
        if pairs + gap > len(KEYS):
            raise DataError(
                f"num_pairs ({pairs}) + gap ({gap}) must be at most {len(KEYS)}: every key is its own letter"
            )
        n = positive_int(options, "num_examples", MAX_EXAMPLES)
        rng = np.random.default_rng(seed_of(options))
        for _ in range(n):
            keys = rng.permutation(len(KEYS))[: pairs + gap]
            values = rng.integers(0, 10, size=pairs + gap)
            asked = rng.permutation(pairs)[:queries]  # never a distractor
            shown = " ".join(f"{KEYS[k]}{v}" for k, v in zip(keys, values, strict=True))
            question = " ".join(KEYS[keys[i]] for i in asked)
            yield Pair(f"{shown}|{question}:", "".join(str(values[i]) for i in asked))


class LookupModule(DataModule):
    name = "lookup"
    description = (
        "Synthetic: made-up facts asked for ('code of bafigo? ' → '4821') whose answers sit only in the "
        "module's own corpus: learnable with retrieval_corpus 'builtin', impossible on val without it."
    )
    options = (
        Option("num_facts", "Facts, each asked for once (so a val fact is never in train).", "1000"),
        Option("value_digits", "Digits of each fact's value.", "4"),
        SEED,
    )
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        for key, value in self._facts(options):
            yield Pair(f"code of {key}? ", value)

    def corpus(self, options: Mapping[str, str]) -> Iterator[str]:
        for key, value in self._facts(options):
            yield f"{key} has the code {value}."

    def _facts(self, options: Mapping[str, str]) -> list[tuple[str, str]]:
        """(key, value) per fact: keys are distinct made-up words of three syllables, so BM25 finds a
        fact by its key alone; the same options always give the same facts."""
        n = positive_int(options, "num_facts", MAX_FACTS)
        digits = positive_int(options, "value_digits", 12)
        rng = np.random.default_rng(seed_of(options))
        base = len(SYLLABLES)
        chosen = rng.choice(MAX_FACTS, size=n, replace=False)
        keys = ["".join(SYLLABLES[c // base**i % base] for i in range(3)) for c in chosen.tolist()]
        values = rng.integers(0, 10**digits, size=n)
        return [(k, f"{v:0{digits}d}") for k, v in zip(keys, values, strict=True)]
