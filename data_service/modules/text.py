"""The ``text`` module: one UTF-8 text file, or every ``.txt``/``.md`` file under a directory.

Each file is one document. It is read in pieces (paragraphs, cut at line ends past ``PIECE_CHARS``)
so a file of any size streams, and so the train/val split has small units to hash: a paragraph that
occurs twice lands on one side only.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from pathlib import Path

from data_service.errors import DataError, NotFoundError
from data_service.modules.base import DataModule, Report, Text, files_under

SUFFIXES = (".txt", ".md")
# Files that are not prose: read as text they would train on their markup or their bytes. Each names
# the module that reads it.
NOT_PROSE = {
    ".csv": "table",
    ".tsv": "table",
    ".parquet": "table",
    ".arrow": "table",
    ".feather": "table",
    ".apkg": "anki",
}
# A paragraph longer than this is cut at the next line end (a longer line is cut where it stands).
PIECE_CHARS = 512
# A whitespace-only cut joins its neighbour unless together they would pass this.
MERGED_CHARS = 4 * PIECE_CHARS
READ_BYTES = 1 << 20


class TextModule(DataModule):
    name = "text"
    description = (
        "UTF-8 text: one file, or every .txt/.md file under a directory (one document each), "
        "split into paragraphs for the train/val split."
    )

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Text]:
        assert path is not None
        if path.is_file() and (module := NOT_PROSE.get(path.suffix.lower())):
            raise DataError(
                f"{path} is a {path.suffix.lower()} file, not prose: the text module would train on its "
                f"raw {'cells and delimiters' if module == 'table' else 'bytes'}; read it with module "
                f"{module!r}"
                + (" (option text_column names the column of text)" if module == "table" else "")
            )
        files = text_files(path) if path.is_dir() else [path]
        report.count("files", len(files))
        blank = True
        for file in files:
            for i, piece in enumerate(pieces(file)):
                blank = blank and not piece.strip()
                yield Text(piece, new_doc=i == 0)
        if blank:
            raise DataError(f"{path} holds no text" if path.is_dir() else _empty_message(path))


def text_files(directory: Path) -> list[Path]:
    """The .txt/.md files under ``directory``, sorted; links that lead out of it are refused."""
    return files_under(directory, SUFFIXES, f"{' or '.join(SUFFIXES)} files")


def _empty_message(path: Path) -> str:
    return f"{path} is empty" if path.stat().st_size == 0 else f"{path} holds only whitespace"


def lines(path: Path) -> Iterator[str]:
    """The file's text in lines (keeping their ends), at most READ_BYTES each; bad UTF-8 is an error
    naming the byte and its offset in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise NotFoundError(f"{path} not found") from None
    except OSError as e:
        raise DataError(f"{path} cannot be read: {e.strerror}") from None
    with f:
        while True:
            raw = f.readline(READ_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                raise DataError(
                    f"{path} is not valid UTF-8: byte 0x{e.object[e.start]:02x} at offset {at} ({e.reason})"
                ) from None
            offset += len(raw)
            if text:
                yield text
            if not raw:
                return


def pieces(path: Path) -> Iterator[str]:
    """The file's text as paragraphs (each with the blank lines after it), none over MERGED_CHARS.

    Joined back together they are the file's text exactly. Whitespace never makes a piece of its own
    (it would count as an empty example): leading blank lines join the first paragraph, and blank lines
    after a paragraph cut at PIECE_CHARS stay with it. Only a run of whitespace too long to join a
    neighbour is left alone, and that one is rightly reported as empty.
    """
    held = ""
    for piece in _cuts(path):
        if held and ((held.strip() and piece.strip()) or len(held) + len(piece) > MERGED_CHARS):
            yield held
            held = ""
        held += piece
    if held:
        yield held


def _cuts(path: Path) -> Iterator[str]:
    """The file's text cut before each paragraph and at line ends past PIECE_CHARS (so a cut may
    leave blank lines alone; ``pieces`` joins them to their neighbours)."""
    buffer: list[str] = []
    size = 0
    after_blank = False
    for line in lines(path):
        blank = not line.strip()
        if buffer and ((after_blank and not blank) or size >= PIECE_CHARS):
            yield "".join(buffer)
            buffer, size = [], 0
        while len(line) > PIECE_CHARS:  # a line longer than a piece: cut it where it stands
            if buffer:
                yield "".join(buffer)
                buffer, size = [], 0
            yield line[:PIECE_CHARS]
            line = line[PIECE_CHARS:]
        buffer.append(line)
        size += len(line)
        after_blank = blank
    if buffer:
        yield "".join(buffer)
