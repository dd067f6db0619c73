"""Made-up facts for the retrieval tests: islands, each with a keeper whose name is a word found nowhere
else, asked about as prompt/answer pairs and stated as passages."""

from __future__ import annotations

import json
import random
from pathlib import Path

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
