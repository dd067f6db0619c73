"""Broken data modules, one per kind of dataset the fit report must catch.

Each is an ordinary third-party module, plugged in through the ``simtrain.data_modules`` entry points.
They make their data from a seeded generator, so the ``source`` of a job is only a label. Batches that
are wrong in themselves (unshifted or masked targets, ids past the vocabulary) cannot come from a module:
those come from the misbehaving data service in ``tests/catalogue/misbehaving.py``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path

from data_service.modules.base import DataModule, Pair, Report, Text

WORDS = [
    "harbour",
    "lantern",
    "orchard",
    "weaver",
    "kettle",
    "meadow",
    "bridge",
    "copper",
    "willow",
    "candle",
]


def _sentence(rng: random.Random) -> str:
    a, b, c = rng.sample(WORDS, 3)
    return f"The {a} near the {b} was {rng.randint(2, 99)} steps from the {c}."


def _word(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))


class ConstantModule(DataModule):
    """One token over and over: runs of 'a' of different lengths (so the split still has two sides)."""

    name = "constant"
    description = "Catalogue: a constant sequence."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        for n in range(40, 240):
            yield Text("a" * n)


class ShuffledModule(DataModule):
    """Word reversal, but every answer belongs to another prompt: labels shuffled, answers random."""

    name = "shuffled"
    description = "Catalogue: prompt/answer pairs whose answers were shuffled."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        rng = random.Random(7)
        prompts = sorted({_word(rng) for _ in range(3000)})
        answers = [p[::-1] for p in prompts]
        rng.shuffle(answers)
        for prompt, answer in zip(prompts, answers, strict=True):
            yield Pair(prompt + "=", answer)


class DuplicatedValModule(DataModule):
    """A tiny text, every paragraph twice: once as written, once with a trailing space.

    The copies are different strings, so the data service's exact-duplicate split puts them on either
    side: val ends up holding paragraphs that train holds too.
    """

    name = "dupval"
    description = "Catalogue: a tiny dataset duplicated into val."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        rng = random.Random(3)
        paragraphs = [" ".join(_sentence(rng) for _ in range(20)) for _ in range(8)]
        for paragraph in paragraphs:
            yield Text(paragraph)
            yield Text(paragraph + " ")


class EmptyModule(DataModule):
    """Half the records are empty strings, as when a reader takes the wrong field."""

    name = "empty"
    description = "Catalogue: empty strings."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        rng = random.Random(5)
        for i in range(600):
            yield Text("" if i % 2 else " ".join(_sentence(rng) for _ in range(3)))
