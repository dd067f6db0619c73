"""The data module interface, and the one place a client-given source becomes a path on disk.

A module turns a source into examples: running ``Text`` (documents, or pieces of one), prompt →
completion ``Pair``s, or templated conversations (``Chat``: segments that are trained on or only
read). Everything after that (tokenizing, splitting, packing) is the store's job, so a module stays a
small reader.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from data_service.errors import DataError, NotFoundError


@dataclass(frozen=True)
class Option:
    """One module option, as ListModules shows it. Values travel as strings."""

    name: str
    description: str
    default: str


@dataclass(frozen=True, slots=True)
class Text:
    """Running text. ``new_doc=False`` continues the document before it (big sources come in pieces)."""

    text: str
    new_doc: bool = True
    # Where the example came from, when a dataset has several sources (the stats count per source).
    source: str = ""


@dataclass(frozen=True, slots=True)
class Pair:
    """A prompt and the completion a model should learn to give; loss is taken on the completion."""

    prompt: str
    completion: str
    source: str = ""
    # The document (an Anki deck) the pair belongs to: pairs of one source and doc are one sequence, in
    # order, which ``memory_examples`` reads back from.
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of a conversation's text; loss is taken on its tokens only if ``trained``."""

    text: str
    trained: bool


@dataclass(frozen=True, slots=True)
class Chat:
    """A conversation rendered with the chat template (``data_service.chat_template``): its segments, in
    order, are the example's text. The first one is the prompt, all before the first reply: the split
    groups chats by it, as it groups pairs by their prompt."""

    segments: tuple[Segment, ...]
    source: str = ""

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def prompt(self) -> str:
        return self.segments[0].text if self.segments else ""


Example = Text | Pair | Chat


@dataclass
class Report:
    """What a module saw while reading, beyond the examples: counts and warnings for the dataset stats."""

    counts: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


class DataModule(ABC):
    """Turns one source under the data root into examples.

    More modules plug in through the ``simtrain.data_modules`` entry-point group. ``read`` is called
    twice per preparation (once to learn the vocabulary and the split, once to encode), so it must
    give the same examples each time, and should yield them lazily so big sources stream.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    # Synthetic modules make their data from options alone; their source is only a label.
    needs_source: ClassVar[bool] = True

    @abstractmethod
    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterable[Example]:
        """The examples in the source at ``path`` (already resolved inside the data root).

        Raise DataError (or NotFoundError) with a message that names the file and the reason.
        """

    def special_tokens(self, path: Path | None, options: Mapping[str, str]) -> tuple[str, ...]:
        """Text the tokenizer must keep as single tokens (a chat template's markers) for this source."""
        return ()

    def corpus(self, options: Mapping[str, str]) -> Iterable[str] | None:
        """Passages of the module's own knowledge (a synthetic task's facts), retrieved from when the
        dataset's ``retrieval_corpus`` is ``builtin``; None when the module has none."""
        return None

    def fingerprint(self, path: Path | None) -> str:
        """What identifies the source's content: sha256 of its bytes, or of every file in a directory."""
        if path is None:
            return f"{self.name}:synthetic"
        return fingerprint_path(path)


def fingerprint_path(path: Path) -> str:
    if path.is_file():
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    digest = hashlib.sha256()
    inside = path.resolve()
    # Files reached through links that leave the directory are not read, so they are not hashed either.
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.resolve().is_relative_to(inside)):
        digest.update(f"{file.relative_to(path).as_posix()}\0{fingerprint_path(file)}\n".encode())
    return digest.hexdigest()


def files_under(directory: Path, suffixes: tuple[str, ...], what: str, hint: str = "") -> list[Path]:
    """The files under ``directory`` with one of ``suffixes``, sorted; links that lead out are refused.
    ``what`` names them in the error when there are none, and ``hint`` says what to do."""
    inside = directory.resolve()
    files = []
    for file in sorted(directory.rglob("*")):
        if file.suffix.lower() not in suffixes or not file.is_file():
            continue
        if not file.resolve().is_relative_to(inside):
            raise DataError(f"{file} is a symbolic link that leads out of {directory}")
        files.append(file)
    if not files:
        raise DataError(f"{directory} is a directory with no {what} in it" + (f"; {hint}" if hint else ""))
    return files


def resolve_source(data_root: Path, source: str) -> Path:
    """The real path of ``source``, refusing anything that is not inside the data root.

    Clients name sources remotely, so absolute paths, ``..`` and symlinks that lead out are refused.
    """
    if not source:
        raise DataError("source is empty: name a file relative to the data root")
    if "\0" in source:
        raise DataError(f"source {source!r} contains a NUL character")
    if Path(source).is_absolute():
        raise DataError(f"source {source!r} is an absolute path: name it relative to the data root")
    root = data_root.resolve()
    path = (root / source).resolve()
    if not path.is_relative_to(root):
        if Path(os.path.normpath(root / source)).is_relative_to(root):
            raise DataError(f"source {source!r} is outside the data root: a symbolic link leads out of it")
        raise DataError(f"source {source!r} is outside the data root: '..' climbs out of it")
    if not path.exists():
        raise NotFoundError(f"source {source!r} not found: upload it, or name a file in the data root")
    return path


def flag(options: Mapping[str, str], name: str) -> bool:
    """An option read as a yes/no flag; anything else is an error that names it."""
    value = options[name].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise DataError(f"option {name} must be true or false, got {options[name]!r}")


def positive_int(options: Mapping[str, str], name: str, maximum: int) -> int:
    """An option read as an integer in [1, maximum]; anything else is an error that names it."""
    try:
        value = int(options[name])
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise DataError(f"option {name} must be an integer from 1 to {maximum}, got {options[name]!r}")
    return value
