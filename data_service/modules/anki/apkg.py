"""Opening an ``.apkg``: pick the newest collection in the zip and unpack it safely to a temporary file.

Packages hold ``collection.anki2`` (oldest), ``collection.anki21``, or ``collection.anki21b`` (zstd
compressed, current). A modern export also carries a dummy ``collection.anki2`` that only says "please
update Anki", so the newest one present is the real one. Members are unpacked with hard limits on size
and on compression ratio, so a zip (or zstd) bomb is refused instead of filling the disk.
"""

from __future__ import annotations

import sqlite3
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import zstandard

from data_service.errors import DataError

# Newest first: the first of these present in a package is the collection read.
COLLECTIONS = ("collection.anki21b", "collection.anki21", "collection.anki2")
MAX_COLLECTION_BYTES = 2 << 30
# Real collections compress maybe 10:1; a bomb compresses 1000:1. Small members may compress well.
MAX_RATIO = 200
RATIO_FREE_BYTES = 4 << 20
CHUNK = 1 << 20


def _unicase(a: str, b: str) -> int:
    """Anki's ``unicase`` collation: compare ignoring case (Unicode case folding)."""
    a, b = a.casefold(), b.casefold()
    return (a > b) - (a < b)


@contextmanager
def open_collection(path: Path) -> Iterator[tuple[sqlite3.Connection, str]]:
    """The package's newest collection as a read-only SQLite connection, and its member name."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise DataError(f"{path} is not a valid .apkg file (a zip archive): {e}") from None
    except OSError as e:
        raise DataError(f"{path} cannot be read: {e.strerror or e}") from None
    with zf, tempfile.TemporaryDirectory(prefix="simtrain-apkg-") as tmp:
        names = set(zf.namelist())
        member = next((name for name in COLLECTIONS if name in names), None)
        if member is None:
            raise DataError(
                f"{path} holds no Anki collection: expected one of {', '.join(COLLECTIONS)}, "
                f"found {', '.join(sorted(names)[:10]) or 'nothing'}"
            )
        db_path = Path(tmp) / "collection.sqlite"
        _unpack(zf, member, db_path, where=f"{path}: {member}")
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            db.create_collation("unicase", _unicase)
            yield db, member
        except sqlite3.DatabaseError as e:
            raise DataError(f"{path}: {member} is not a readable Anki collection ({e})") from None
        finally:
            db.close()


def _unpack(zf: zipfile.ZipFile, member: str, out: Path, where: str) -> None:
    info = zf.getinfo(member)
    if info.file_size > MAX_COLLECTION_BYTES:
        raise DataError(f"{where} is {info.file_size} bytes, over the limit of {MAX_COLLECTION_BYTES}")
    packed = max(info.compress_size, 1)
    try:
        with zf.open(info) as raw, out.open("wb") as f:
            if member.endswith(".anki21b"):
                with zstandard.ZstdDecompressor().stream_reader(raw) as unzstd:
                    _copy(unzstd, f, packed, where)
            else:
                _copy(raw, f, packed, where)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(f"{where} is corrupt or truncated: {e}") from None
    except zstandard.ZstdError as e:
        raise DataError(f"{where} is not valid zstd data: {e}") from None


def _copy(src: IO[bytes], dst: IO[bytes], packed: int, where: str) -> None:
    """Copy with the size and ratio limits checked as bytes arrive, not trusted from headers."""
    copied = 0
    while chunk := src.read(CHUNK):
        copied += len(chunk)
        if copied > MAX_COLLECTION_BYTES:
            raise DataError(f"{where} unpacks to over {MAX_COLLECTION_BYTES} bytes; refused")
        if copied > RATIO_FREE_BYTES and copied > MAX_RATIO * packed:
            raise DataError(
                f"{where} unpacks to over {MAX_RATIO} times its packed size of {packed} bytes "
                "(a zip bomb?); refused"
            )
        dst.write(chunk)
