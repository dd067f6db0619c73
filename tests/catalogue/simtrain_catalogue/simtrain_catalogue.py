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


class NoiseModule(DataModule):
    """Random bytes read as Latin-1: every character equally likely, so nothing is there to learn."""

    name = "noise"
    description = "Catalogue: random bytes read as Latin-1."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        rng = random.Random(13)
        for _ in range(200):
            yield Text("".join(chr(rng.randrange(256)) for _ in range(400)))


class YesModule(DataModule):
    """Varied questions that all get the same answer: the answers carry no information."""

    name = "yes"
    description = "Catalogue: every completion is 'yes'."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        rng = random.Random(17)
        places = (rng.sample(WORDS, 2) for _ in range(3000))
        questions = sorted({f"Is the {a} {rng.randint(2, 99)} steps from the {b}? " for a, b in places})
        for question in questions:
            yield Pair(question, "yes")


class LongAnswersModule(DataModule):
    """Short prompts with sentence-long answers: at a small block most answers are cut off."""

    name = "longanswers"
    description = "Catalogue: answers longer than the block."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        rng = random.Random(19)
        for i in range(2000):
            word = _word(rng)
            yield Pair(word + "=", word[::-1] if i % 8 == 0 else _sentence(rng))


class LongPromptsModule(DataModule):
    """Prompts that fill the block for nine examples in ten: their answers never reach a target."""

    name = "longprompts"
    description = "Catalogue: prompts as long as the block."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        rng = random.Random(23)
        for i in range(2000):
            word = _word(rng)
            prompt = f"{word}=" if i % 10 == 0 else f"{_sentence(rng)} {word}="
            yield Pair(prompt, word[::-1])


class TinyTextModule(DataModule):
    """A few short lines: less text than one block of a typical job."""

    name = "tinytext"
    description = "Catalogue: too little text for one block."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        rng = random.Random(29)
        for _ in range(6):
            yield Text(" ".join(rng.sample(WORDS, 3)))


class AllSameModule(DataModule):
    """One paragraph, repeated: every example is a copy of the first, so val gets nothing."""

    name = "allsame"
    description = "Catalogue: every example is the same."
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        rng = random.Random(31)
        paragraph = " ".join(_sentence(rng) for _ in range(6))
        for _ in range(200):
            yield Text(paragraph)
