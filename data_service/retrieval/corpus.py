"""A retrieval corpus: where its passages come from, reading them one at a time, and its fingerprint.

Passages are paragraphs of text and markdown files (a long one cut at a line end, as the text module
cuts it), lines of JSON Lines (``text``, or a prompt and its completion joined), notes of Anki decks
(every field a person sees, cloze deletions shown), or the module's own (``builtin``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from data_service.errors import DataError
from data_service.modules.anki.apkg import open_collection
from data_service.modules.anki.cloze import CLOZE
from data_service.modules.anki.collection import notes, notetypes
from data_service.modules.anki.html import field_text
from data_service.modules.base import DataModule, Pair, Report, files_under, fingerprint_path, resolve_source
from data_service.modules.jsonl import parse_line, parsed_lines
from data_service.modules.text import pieces
from data_service.retrieval.options import BUILTIN

SUFFIXES = (".txt", ".md", ".jsonl", ".apkg")


@dataclass(frozen=True)
class Corpus:
    """The passages named by ``retrieval_corpus``: files at ``path``, or the module's own when None."""

    name: str
    path: Path | None
    module: DataModule
    module_options: Mapping[str, str]

    def passages(self) -> Iterator[str]:
        """Every passage, stripped, in a fixed order; blank ones are skipped."""
        if self.path is None:
            found = self.module.corpus(self.module_options)
            assert found is not None  # resolve_corpus refused a module without one
            texts: Iterator[str] = iter(found)
        elif self.path.is_dir():
            texts = (p for file in corpus_files(self.path) for p in _file_passages(file))
        else:
            texts = _file_passages(self.path)
        for text in texts:
            if text.strip():
                yield text.strip()

    def fingerprint(self) -> str:
        """What identifies the corpus's content: its files' sha256, or that of the module's passages."""
        if self.path is not None:
            return fingerprint_path(self.path)
        digest = hashlib.sha256()
        for passage in self.passages():
            digest.update(passage.encode("utf-8") + b"\0")
        return f"{self.module.name}:builtin:{digest.hexdigest()}"


def resolve_corpus(
    module: DataModule, data_root: Path, opts: Mapping[str, str], packing: str
) -> Corpus | None:
    """The corpus a request names (None without retrieval), checked before any work is done."""
    name = opts.get("retrieval_corpus", "")
    if not name:
        return None
    if packing != "pairs":
        raise DataError(
            f"option retrieval_corpus needs packing 'pairs' (prompt/completion rows), not {packing!r}"
        )
    module_options = {o.name: opts[o.name] for o in module.options}
    if name == BUILTIN:
        if module.corpus(module_options) is None:
            raise DataError(
                f"option retrieval_corpus is {BUILTIN!r}, but module {module.name!r} has no corpus of its "
                "own: name a corpus file under the data root"
            )
        return Corpus(name, None, module, module_options)
    try:
        path = resolve_source(data_root, name)
    except DataError as e:
        raise DataError(f"option retrieval_corpus: {e}") from None
    if path.is_file() and path.suffix.lower() not in SUFFIXES:
        raise DataError(f"option retrieval_corpus: {path.name} is not a corpus file; {_KINDS}")
    return Corpus(name, path, module, module_options)


_KINDS = f"use {', '.join(SUFFIXES)} files or a directory of them"


def corpus_files(directory: Path) -> list[Path]:
    """The corpus files under ``directory``, sorted; links that lead out of it are refused."""
    return files_under(directory, SUFFIXES, "corpus files", _KINDS)


def _file_passages(path: Path) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_passages(path)
    if suffix == ".apkg":
        return note_passages(path)
    return pieces(path)


def _jsonl_passages(path: Path) -> Iterator[str]:
    parse = functools.partial(parse_line, text_key="text", prompt_key="prompt", completion_key="completion")
    for example in parsed_lines(path, parse, Report()):
        if isinstance(example, Pair):
            yield f"{example.prompt.rstrip()} {example.completion.lstrip()}"
        else:
            yield example.text


def note_passages(path: Path) -> Iterator[str]:
    """One passage per note: the text of its fields, a line each, with cloze deletions filled in."""
    with open_collection(path) as (db, _):
        types, all_notes = notetypes(db), notes(db)
    for note in all_notes:
        notetype = types.get(note.notetype_id)
        fields = [CLOZE.sub(r"\2", f) for f in note.fields] if notetype and notetype.cloze else note.fields
        yield "\n".join(text for f in fields if (text := field_text(f).text))
