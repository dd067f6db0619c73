"""Reading notes, note types and decks from an Anki collection, in the old (JSON in ``col``) and the
new (``notetypes``/``fields``/``decks`` tables, schema 15+) layouts."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field

from simtrain import protowire

FIELD_SEPARATOR = "\x1f"


@dataclass
class NoteType:
    name: str
    fields: list[str]
    cloze: bool


@dataclass
class Note:
    id: int
    notetype_id: int
    fields: list[str]
    tags: list[str]
    decks: set[str] = field(default_factory=set)


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        is not None
    )


def _notetype_kind(config: bytes) -> int:
    """Field 1 (``kind``: 0 normal, 1 cloze) of the NotetypeConfig protobuf in ``notetypes.config``."""
    kinds = [
        value
        for number, value in protowire.fields(memoryview(config))
        if number == 1 and isinstance(value, int)
    ]
    return kinds[-1] if kinds else 0


def notetypes(db: sqlite3.Connection) -> dict[int, NoteType]:
    if _has_table(db, "notetypes"):
        fields: dict[int, list[str]] = defaultdict(list)
        for ntid, name in db.execute("SELECT ntid, name FROM fields ORDER BY ntid, ord"):
            fields[ntid].append(name)
        return {
            ntid: NoteType(name, fields[ntid], _notetype_kind(bytes(config)) == 1)
            for ntid, name, config in db.execute("SELECT id, name, config FROM notetypes")
        }
    (models,) = db.execute("SELECT models FROM col").fetchone()
    return {
        int(ntid): NoteType(
            m["name"], [f["name"] for f in sorted(m["flds"], key=lambda f: f["ord"])], m.get("type") == 1
        )
        for ntid, m in json.loads(models).items()
    }


def decks(db: sqlite3.Connection) -> dict[int, str]:
    """Deck names by id, with subdecks written ``Parent::Child`` in both layouts."""
    if _has_table(db, "decks"):
        return {
            did: name.replace(FIELD_SEPARATOR, "::") for did, name in db.execute("SELECT id, name FROM decks")
        }
    (raw,) = db.execute("SELECT decks FROM col").fetchone()
    return {int(did): d["name"] for did, d in json.loads(raw).items()}


def notes(db: sqlite3.Connection) -> list[Note]:
    """Every note, with the decks its cards are in (a card in a filtered deck counts in its home deck)."""
    names = decks(db)
    found = {
        nid: Note(nid, mid, flds.split(FIELD_SEPARATOR), tags.split())
        for nid, mid, flds, tags in db.execute("SELECT id, mid, flds, tags FROM notes ORDER BY id")
    }
    rows = db.execute("SELECT nid, CASE WHEN odid != 0 THEN odid ELSE did END FROM cards")
    for nid, did in rows:
        if nid in found:
            found[nid].decks.add(names.get(did, f"deck {did}"))
    return list(found.values())
