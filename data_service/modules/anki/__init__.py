"""The ``anki`` module: ``.apkg`` decks, every note a prompt → answer pair, cloze notes one per deletion.

Fields are turned from HTML into the text a person sees. A field that holds only media (an image, a
sound) has no text to learn from: such notes are counted and reported, never kept as markup. A field
that mixes text with media keeps its text; the media are dropped, and counted so the stats say so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from data_service.errors import DataError
from data_service.modules.anki.apkg import open_collection
from data_service.modules.anki.cloze import cloze_numbers, cloze_pair
from data_service.modules.anki.collection import Note, NoteType, notes, notetypes
from data_service.modules.anki.html import FieldText, field_text
from data_service.modules.base import DataModule, Option, Pair, Report


class AnkiModule(DataModule):
    name = "anki"
    description = (
        "Anki decks (.apkg, any collection format): each note is a prompt → answer pair; "
        "cloze notes give one pair per deletion."
    )
    options = (
        Option("prompt_field", "Field used as the prompt (default: each note type's first field).", ""),
        Option("answer_field", "Field used as the answer (default: each note type's second field).", ""),
        Option("deck", "Only notes with cards in this deck or its subdecks (default: all).", ""),
        Option("tag", "Only notes with this tag; several: comma-separated, any of them (default: all).", ""),
    )

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        assert path is not None
        if path.is_dir():
            raise DataError(f"{path} is a directory, not an .apkg file")
        with open_collection(path) as (db, member):
            report.count(f"format:{member.removeprefix('collection.')}")
            types, all_notes = notetypes(db), notes(db)
        pairs = list(self._pairs(path, types, all_notes, options, report))
        if not pairs:
            raise DataError(f"{path} gave no prompt/answer pairs: {self._why_none(types, report)}")
        yield from pairs

    def _pairs(
        self,
        path: Path,
        types: dict[int, NoteType],
        all_notes: list[Note],
        options: Mapping[str, str],
        report: Report,
    ) -> Iterator[Pair]:
        deck = options["deck"].strip()
        tags = {t.strip().casefold() for t in options["tag"].split(",") if t.strip()}
        for note in all_notes:
            report.count("notes")
            if deck and not any(d == deck or d.startswith(deck + "::") for d in note.decks):
                report.count("notes_not_in_deck")
                continue
            if tags and not tags & {t.casefold() for t in note.tags}:
                report.count("notes_without_tag")
                continue
            notetype = types.get(note.notetype_id)
            if notetype is None:
                report.count("notes_of_unknown_note_type")
                continue
            if notetype.cloze:
                yield from self._cloze_pairs(note, notetype, options, report)
            else:
                pair = self._basic_pair(note, notetype, options, report)
                if pair:
                    yield pair

    def _field(
        self, note: Note, notetype: NoteType, wanted: str, position: int, report: Report
    ) -> str | None:
        """The raw HTML of the wanted field (by name, any case), or of the field at ``position``."""
        names = [n.casefold() for n in notetype.fields]
        index = names.index(wanted.casefold()) if wanted and wanted.casefold() in names else None
        if (wanted and index is None) or (not wanted and position >= len(notetype.fields)):
            report.count("notes_missing_field")
            what = f"field {wanted!r}" if wanted else f"a field number {position + 1}"
            report.warn(
                f"Note type {notetype.name!r} has no {what} (its fields: {', '.join(notetype.fields)}); "
                "its notes were skipped."
            )
            return None
        at = position if index is None else index
        return note.fields[at] if at < len(note.fields) else ""

    def _usable(self, side: FieldText, report: Report) -> bool:
        report.count("media_references", side.media)
        if side.media_only:
            report.count("media_only_fields")
            return False
        if not side.text:
            report.count("empty_fields")
            return False
        return True

    def _basic_pair(
        self, note: Note, notetype: NoteType, options: Mapping[str, str], report: Report
    ) -> Pair | None:
        prompt_html = self._field(note, notetype, options["prompt_field"], 0, report)
        answer_html = self._field(note, notetype, options["answer_field"], 1, report)
        if prompt_html is None or answer_html is None:
            return None
        prompt, answer = field_text(prompt_html), field_text(answer_html)
        usable = [self._usable(side, report) for side in (prompt, answer)]
        if not all(usable):
            report.count(
                "notes_skipped_media_only"
                if prompt.media_only or answer.media_only
                else "notes_skipped_empty"
            )
            return None
        _count_dropped_media(report, prompt, answer)
        report.count("pairs")
        return Pair(prompt.text, answer.text, doc=_deck(note))

    def _cloze_pairs(
        self, note: Note, notetype: NoteType, options: Mapping[str, str], report: Report
    ) -> Iterator[Pair]:
        text = self._field(note, notetype, options["prompt_field"], 0, report)
        if text is None:
            return
        numbers = cloze_numbers(text)
        if not numbers:
            report.count("cloze_notes_without_deletions")
            return
        for number in numbers:
            prompt_html, answer_html = cloze_pair(text, number)
            prompt, answer = field_text(prompt_html), field_text(answer_html)
            if not (self._usable(prompt, report) and self._usable(answer, report)):
                report.count("cloze_deletions_skipped")
                continue
            _count_dropped_media(report, prompt, answer)
            report.count("cloze_pairs")
            report.count("pairs")
            yield Pair(prompt.text, answer.text, doc=_deck(note))

    @staticmethod
    def _why_none(types: dict[int, NoteType], report: Report) -> str:
        counts = {k: v for k, v in sorted(report.counts.items()) if not k.startswith("format:")}
        kinds = "; ".join(f"{t.name}: {', '.join(t.fields)}" for t in types.values())
        return f"counts {counts}; note types and fields: {kinds}"


def _count_dropped_media(report: Report, *sides: FieldText) -> None:
    """Count the fields of a kept pair whose media were dropped beside their text: the model trains on
    the words without what the pictures showed, and a person should hear of it."""
    report.count("media_dropped_fields", sum(side.media > 0 for side in sides))


def _deck(note: Note) -> str:
    """The deck a note's pairs are remembered in (``memory_examples``): the first by name of its cards'."""
    return min(note.decks, default="")
