"""Anki decks made on the spot for tests: genanki writes the oldest format (collection.anki2), and the
official ``anki`` package writes collection.anki21 (legacy export) and collection.anki21b (current).

Every deck holds the same notes, so one set of expectations checks all three formats.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# (deck, front HTML, back HTML, tags)
BASIC = [
    ("Geo", "Capital of <b>France</b>?", "Paris", ["geo", "europe"]),
    ("Geo::Europe", "Capital of&nbsp;Spain &amp; its <i>largest</i> city?", "Madrid", ["geo"]),
    (
        "Geo",
        "<div>Longest river</div><div>in Africa?</div>",
        "The Nile<br>(about 6650 km)",
        ["geo", "africa"],
    ),
    ("Other", "2 + 2 &lt; 5?", "Yes", ["maths"]),
    ("Other", '<img src="flag.png">', "Which flag is this?", ["pictures"]),
    ("Other", "What sound is this?", "[sound:bark.mp3]", ["sounds"]),
]
# (deck, cloze text, tags)
CLOZE = [
    ("Geo", "{{c1::Paris}} is the capital of {{c2::France::country}}.", ["geo", "cloze"]),
]
# What the anki module makes of the notes above (media-only notes are skipped).
EXPECTED_PAIRS = [
    ("Capital of France?", "Paris"),
    ("Capital of Spain & its largest city?", "Madrid"),
    ("Longest river\nin Africa?", "The Nile\n(about 6650 km)"),
    ("2 + 2 < 5?", "Yes"),
    ("[...] is the capital of France.", "Paris"),
    ("Paris is the capital of [country].", "France"),
]


def genanki_deck(path: Path) -> Path:
    """collection.anki2, as genanki writes it."""
    import genanki

    decks: dict[str, genanki.Deck] = {}
    for i, (deck, front, back, tags) in enumerate(BASIC):
        d = decks.setdefault(deck, genanki.Deck(2_000_000 + len(decks), deck))
        d.add_note(genanki.Note(model=genanki.BASIC_MODEL, fields=[front, back], tags=tags, guid=f"b{i}"))
    for i, (deck, text, tags) in enumerate(CLOZE):
        d = decks.setdefault(deck, genanki.Deck(2_000_000 + len(decks), deck))
        d.add_note(genanki.Note(model=genanki.CLOZE_MODEL, fields=[text, ""], tags=tags, guid=f"c{i}"))
    genanki.Package(list(decks.values())).write_to_file(str(path))
    return path


def anki_deck(path: Path, legacy: bool) -> Path:
    """collection.anki21 (``legacy``) or collection.anki21b, exported by the official anki package."""
    from anki.collection import Collection, ExportAnkiPackageOptions

    with tempfile.TemporaryDirectory() as tmp:
        col = Collection(str(Path(tmp) / "collection.anki2"))
        try:
            basic, cloze = col.models.by_name("Basic"), col.models.by_name("Cloze")
            for deck, front, back, tags in BASIC:
                note = col.new_note(basic)
                note["Front"], note["Back"] = front, back
                note.tags = tags
                col.add_note(note, col.decks.id(deck))
            for deck, text, tags in CLOZE:
                note = col.new_note(cloze)
                note["Text"] = text
                note.tags = tags
                col.add_note(note, col.decks.id(deck))
            options = ExportAnkiPackageOptions(
                with_scheduling=False, with_deck_configs=False, with_media=False, legacy=legacy
            )
            col.export_anki_package(out_path=str(path), options=options, limit=None)
        finally:
            col.close()
    return path
