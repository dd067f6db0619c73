"""Made-up facts for the retrieval tests: islands, each with a keeper whose name is a word found nowhere
else, asked about as prompt/answer pairs and stated as passages; and a module with a corpus of its own."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from data_service.modules.base import DataModule, Pair, Report

SYLLABLES = "ka lo mi ru ze to vi na pe su go ra".split()


def keeper(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(4))


def facts(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(prompt, answer, passage) for ``n`` islands; every answer is a distinct made-up word."""
    rng = random.Random(seed)
    names: set[str] = set()
    out = []
    for i in range(n):
        while (name := keeper(rng)) in names:
            pass
        names.add(name)
        out.append(
            (
                f"Who keeps the lighthouse on isle {i}?",
                f" {name}",
                f"The lighthouse on isle {i} is kept by {name}, who rows out at dawn.",
            )
        )
    return out


def write_pairs(path: Path, n: int) -> str:
    rows = [{"prompt": p, "completion": a} for p, a, _ in facts(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path.name


def write_passages(path: Path, n: int) -> str:
    """The facts as a text file, a paragraph each."""
    path.write_text("\n\n".join(passage for _, _, passage in facts(n)) + "\n", encoding="utf-8")
    return path.name


class Almanac(DataModule):
    """A module with passages of its own, as a synthetic task has."""

    name = "almanac"
    description = "made-up facts and their questions"
    needs_source = False
    hours = 12

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        for i in range(30):
            yield Pair(f"When does the tide turn at cove {i}?", f" hour {i % self.hours}")

    def corpus(self, options: Mapping[str, str]) -> Iterable[str]:
        return [f"At cove {i} the tide turns at hour {i % self.hours}." for i in range(30)] + ["  "]
