"""Writes ``tiny.txt``, the demo corpus: short harbour-town stories from a small hand-written grammar.

The text is generated (seeded, so it is reproducible) rather than copied from anywhere. Its structure
is regular enough that a 3-layer character model learns it within a few hundred CPU steps.

    python data_service/demo/make_corpus.py
"""

import random
from pathlib import Path

NAMES = ["Ada", "Bram", "Cora", "Dov", "Esme", "Finn", "Greta", "Hugo", "Ines", "Jory"]
JOBS = ["baker", "sailor", "miller", "weaver", "painter", "smith", "gardener", "clockmaker"]
PLACES = ["the harbour", "the market", "the old mill", "the lighthouse", "the bridge", "the orchard"]
THINGS = ["a red kite", "a loaf of rye", "a brass key", "a coil of rope", "a jar of honey", "a small boat"]
WEATHER = ["rain fell softly", "the wind turned cold", "the sun came out", "fog rolled in from the sea"]
FEELINGS = ["glad", "tired", "curious", "worried", "proud", "quiet"]
TIMES = ["In the morning", "At noon", "Late in the evening", "Before dawn", "After supper"]


def sentence(rng: random.Random) -> str:
    name, other = rng.sample(NAMES, 2)
    templates = [
        f"{rng.choice(TIMES)}, {name} the {rng.choice(JOBS)} walked to {rng.choice(PLACES)}.",
        f"{name} carried {rng.choice(THINGS)} to {rng.choice(PLACES)} and gave it to {other}.",
        f"When {rng.choice(WEATHER)}, {name} felt {rng.choice(FEELINGS)}.",
        f"{other} asked {name} about {rng.choice(THINGS)}, and {name} laughed.",
        f"At {rng.choice(PLACES)}, {name} met {other}, who was a {rng.choice(JOBS)}.",
        f"{name} counted {rng.randint(2, 9)} boats and {rng.randint(2, 9)} gulls from {rng.choice(PLACES)}.",
    ]
    return rng.choice(templates)


def story(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(3, 6)))


def main(n_stories: int = 900, seed: int = 1234) -> None:
    rng = random.Random(seed)
    text = "\n\n".join(story(rng) for _ in range(n_stories)) + "\n"
    (Path(__file__).parent / "tiny.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
