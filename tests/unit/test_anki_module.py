"""The anki module on decks in all three collection formats, made here with genanki and the anki package."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from data_service.errors import DataError
from data_service.modules.anki import AnkiModule, apkg
from data_service.modules.anki.cloze import cloze_numbers, cloze_pair
from data_service.modules.anki.html import field_text
from data_service.modules.base import Pair, Report
from tests.anki_decks import EXPECTED_PAIRS, anki_deck, genanki_deck

DEFAULTS = {"prompt_field": "", "answer_field": "", "deck": "", "tag": ""}
MAKERS: dict[str, Callable[[Path], Path]] = {
    "anki2": genanki_deck,
    "anki21": lambda p: anki_deck(p, legacy=True),
    "anki21b": lambda p: anki_deck(p, legacy=False),
}


@pytest.fixture(scope="module")
def decks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("decks")
    return {fmt: make(folder / f"{fmt}.apkg") for fmt, make in MAKERS.items()}


def read(path: Path, report: Report | None = None, **options: str) -> list[tuple[str, str]]:
    pairs = AnkiModule().read(path, DEFAULTS | options, report or Report())
    return [(p.prompt, p.completion) for p in pairs if isinstance(p, Pair)]


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_every_format_gives_the_same_pairs(decks: dict[str, Path], fmt: str):
    names = zipfile.ZipFile(decks[fmt]).namelist()
    assert f"collection.{fmt}" in names
    report = Report()
    assert sorted(read(decks[fmt], report)) == sorted(EXPECTED_PAIRS)
    assert report.counts[f"format:{fmt}"] == 1
    assert report.counts["cloze_pairs"] == 2
    # The image-only front and the sound-only back: counted, skipped, never kept as markup.
    assert report.counts["media_only_fields"] == 2
    assert report.counts["notes_skipped_media_only"] == 2


def test_the_newest_collection_wins_over_the_dummy(decks: dict[str, Path]):
    names = zipfile.ZipFile(decks["anki21b"]).namelist()
    assert "collection.anki2" in names  # the "please update Anki" dummy
    assert sorted(read(decks["anki21b"])) == sorted(EXPECTED_PAIRS)


@pytest.mark.parametrize("fmt", ["anki2", "anki21b"])
def test_deck_filter_takes_subdecks(decks: dict[str, Path], fmt: str):
    report = Report()
    got = read(decks[fmt], report, deck="Geo")
    assert sorted(got) == sorted(p for p in EXPECTED_PAIRS if p[1] not in ("Yes",))
    assert report.counts["notes_not_in_deck"] == 3
    assert read(decks[fmt], deck="Geo::Europe") == [("Capital of Spain & its largest city?", "Madrid")]


@pytest.mark.parametrize("fmt", ["anki2", "anki21b"])
def test_tag_filter(decks: dict[str, Path], fmt: str):
    assert sorted(read(decks[fmt], tag="AFRICA, maths")) == [
        ("2 + 2 < 5?", "Yes"),
        ("Longest river\nin Africa?", "The Nile\n(about 6650 km)"),
    ]
    with pytest.raises(DataError, match="gave no prompt/answer pairs"):
        read(decks[fmt], tag="nothing-has-this")


def test_fields_by_name(decks: dict[str, Path]):
    swapped = read(decks["anki21b"], prompt_field="back", answer_field="Front", tag="maths")
    assert swapped == [("Yes", "2 + 2 < 5?")]
    report = Report()
    with pytest.raises(DataError, match="note types and fields: .*Basic: Front, Back"):
        read(decks["anki21b"], report, answer_field="Meaning", tag="maths")
    assert any("has no field 'Meaning'" in w for w in report.warnings)
    # Cloze notes take their answer from the deletion, so they do not need the answer field.
    assert len(read(decks["anki21b"], answer_field="Meaning")) == 2


def test_html_to_text():
    assert field_text("a&nbsp;&amp;&nbsp;b<br>c").text == "a & b\nc"
    assert field_text("<style>p{}</style><p>x</p><script>y()</script>").text == "x"
    assert field_text("  lots   of\tspace  ").text == "lots of space"
    only_media = field_text('<img src="a.png"> [sound:b.mp3]')
    assert only_media.media_only and only_media.media == 2
    mixed = field_text('A dog <img src="dog.png">')
    assert mixed.text == "A dog" and not mixed.media_only


def test_cloze_pairs():
    text = "{{c1::a}} and {{c2::b::hint}} and {{c1::c}}"
    assert cloze_numbers(text) == [1, 2]
    assert cloze_pair(text, 1) == ("[...] and b and [...]", "a, c")
    assert cloze_pair(text, 2) == ("a and [hint] and c", "b")


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_not_a_zip(tmp_path: Path):
    path = tmp_path / "fake.apkg"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match=r"fake\.apkg is not a valid \.apkg file"):
        read(path)


def test_truncated_package(decks: dict[str, Path], tmp_path: Path):
    data = decks["anki21"].read_bytes()
    path = tmp_path / "cut.apkg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.apkg"):
        read(path)


def test_corrupt_collection(tmp_path: Path):
    path = _zip(tmp_path / "junk.apkg", {"collection.anki21": b"SQLite? no, just junk" * 100})
    with pytest.raises(DataError, match=r"junk\.apkg: collection\.anki21 is not a readable Anki collection"):
        read(path)


def test_no_collection_in_the_zip(tmp_path: Path):
    path = _zip(tmp_path / "empty.apkg", {"media": b"{}"})
    with pytest.raises(DataError, match=r"holds no Anki collection: expected one of .* found media"):
        read(path)


def test_zip_bomb_is_refused(tmp_path: Path):
    path = _zip(tmp_path / "bomb.apkg", {"collection.anki21": bytes(16 << 20)})
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb\.apkg: collection\.anki21 unpacks to over 200 times"):
        read(path)


def test_zstd_bomb_is_refused(tmp_path: Path):
    packed = zstandard.ZstdCompressor().compress(bytes(16 << 20))
    path = _zip(tmp_path / "zbomb.apkg", {"collection.anki21b": packed}, zipfile.ZIP_STORED)
    with pytest.raises(DataError, match=r"zbomb\.apkg: collection\.anki21b unpacks to over 200 times"):
        read(path)


def test_oversized_member_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(apkg, "MAX_COLLECTION_BYTES", 1000)
    path = _zip(tmp_path / "big.apkg", {"collection.anki2": bytes(range(256)) * 8})
    with pytest.raises(
        DataError, match=r"big\.apkg: collection\.anki2 is 2048 bytes, over the limit of 1000"
    ):
        read(path)


def test_bad_zstd(tmp_path: Path):
    path = _zip(tmp_path / "badz.apkg", {"collection.anki21b": b"\x28\xb5\x2f\xfd" + b"garbage" * 10})
    with pytest.raises(DataError, match=r"badz\.apkg: collection\.anki21b is not valid zstd data"):
        read(path)


def test_directory_is_refused(tmp_path: Path):
    with pytest.raises(DataError, match="is a directory, not an .apkg file"):
        read(tmp_path)


def test_fields_mixing_text_and_images_are_counted_and_warned(tmp_path: Path):
    import genanki

    from data_service.modules import discover
    from data_service.store import Store

    deck = genanki.Deck(3_000_001, "Birds")
    fronts = ['<img src="robin.jpg"> Which bird is this?', "Name the bird", '<img src="wren.png">']
    for i, front in enumerate(fronts * 10):
        back = f'A bird, number {i} <img src="b{i}.png">' if i % 3 == 1 else f"Bird {i}"
        deck.add_note(genanki.Note(model=genanki.BASIC_MODEL, fields=[front, back], guid=f"m{i}"))
    root = tmp_path / "data"
    root.mkdir()
    genanki.Package([deck]).write_to_file(str(root / "birds.apkg"))
    ds = Store(tmp_path / "prepared").prepare(discover()["anki"], root, "birds.apkg", packing="pairs")
    module = ds.meta["stats"]["module"]
    # Kept notes: 10 with an image beside the question, 10 with one beside the answer; the 10
    # image-only fronts are skipped (their own count), so their backs count for neither.
    assert module["media_dropped_fields"] == 20
    assert module["media_only_fields"] == 10
    assert any(
        w.startswith("20 fields mixed text with images") and "images were dropped" in w
        for w in ds.meta["warnings"]
    )


@pytest.mark.parametrize("fmt", ["anki2", "anki21b"])
def test_pairs_know_their_deck(decks: dict[str, Path], fmt: str):
    pairs = AnkiModule().read(decks[fmt], DEFAULTS, Report())
    doc = {p.prompt: p.doc for p in pairs}
    assert doc["Capital of Spain & its largest city?"] == "Geo::Europe"
    assert all(doc.values())  # every pair belongs to a deck, which memory_examples reads back from
