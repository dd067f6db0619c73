"""Control tasks whose learnability is known: ``sort`` (minGPT's sorting demo) and ``add`` (n-digit sums).

A model that cannot learn these has a trainer problem; one that learns these but not your data has a
data problem. Both are prompt → completion pairs made from a seeded generator, so they need no source
file (the job's ``source`` is only a label).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from data_service.errors import DataError
from data_service.modules.base import DataModule, Option, Pair, Report, flag, positive_int

MAX_EXAMPLES = 1_000_000
NUM_EXAMPLES = Option("num_examples", "How many examples to draw (duplicates included).", "10000")
SEED = Option("seed", "Seed of the example generator.", "0")


def seed_of(options: Mapping[str, str]) -> int:
    try:
        return int(options["seed"]) % 2**64
    except ValueError:
        raise DataError(f"option seed must be an integer, got {options['seed']!r}") from None


class SortModule(DataModule):
    name = "sort"
    description = "Synthetic: a sequence of digits → the same digits sorted (minGPT's sort demo)."
    options = (
        Option("length", "Digits per sequence.", "6"),
        Option("num_digits", "Digits are drawn from 0 .. num_digits-1.", "3"),
        NUM_EXAMPLES,
        SEED,
    )
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        length = positive_int(options, "length", 64)
        digits = positive_int(options, "num_digits", 10)
        n = positive_int(options, "num_examples", MAX_EXAMPLES)
        rng = np.random.default_rng(seed_of(options))
        for row in rng.integers(0, digits, size=(n, length)):
            yield Pair("".join(map(str, row)) + "=", "".join(map(str, np.sort(row))))


class AddModule(DataModule):
    name = "add"
    description = "Synthetic: n-digit addition 'a+b=' → the sum (digits reversed by default, as in minGPT)."
    options = (
        Option("digits", "Digits per operand.", "2"),
        Option("reverse", "Write the sum's digits last to first, which is easier to learn.", "true"),
        NUM_EXAMPLES,
        SEED,
    )
    needs_source = False

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        digits = positive_int(options, "digits", 18)
        reverse = flag(options, "reverse")
        n = positive_int(options, "num_examples", MAX_EXAMPLES)
        rng = np.random.default_rng(seed_of(options))
        for a, b in rng.integers(0, 10**digits, size=(n, 2), dtype=np.int64):
            total = f"{a + b:0{digits + 1}d}"
            yield Pair(f"{a:0{digits}d}+{b:0{digits}d}=", total[::-1] if reverse else total)
