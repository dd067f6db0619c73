"""Storing an uploaded source under the data root: a safe name, a size limit, never half a file.

The client's name is only a hint: it is cleaned (no directories; nothing but letters and digits, of
any script, and ``._-``) and the file is stored at the top of the data root under it. An existing
file is never replaced: when the name is taken by other bytes, the content hash goes into the name
(``notes-<12 hex>.txt``). Uploading the same bytes twice gives the same source.

So the sources are the plain files at the top of the data root: ``list_sources`` lists those, and
leaves out folders (a deployment may keep its state, prepared datasets among it, under the data
root), links, and the hidden temporary files of uploads still in progress.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from data_service.errors import DataError
from simtrain.data.v1 import data_service_pb2 as pb

DEFAULT_MAX_UPLOAD_BYTES = 256 << 20
MAX_NAME_CHARS = 80
# File systems count a name's bytes (255 at most); this leaves room for the ``-<12 hex>`` of a taken name.
MAX_NAME_BYTES = 200
# Letters and digits of any script stay (``\w`` is Unicode-aware); anything else, spaces, punctuation,
# control and formatting characters (a right-to-left override) and look-alike slashes among it, goes.
_UNSAFE = re.compile(r"[^\w.-]+")


def max_upload_bytes() -> int:
    """The size limit: ``SIMTRAIN_MAX_UPLOAD_BYTES``, or 256 MiB."""
    return int(os.environ.get("SIMTRAIN_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


def safe_name(filename: str) -> str:
    """The last path component of ``filename``, reduced to letters and digits (of any script, so
    ``Geschäftsprozess.apkg`` keeps its name), '.', '_' and '-'."""
    base = unicodedata.normalize("NFC", re.split(r"[/\\]", filename)[-1])  # "a" + U+0308 is one "ä"
    stem, dot, suffix = _UNSAFE.sub("_", base).lstrip("._-").rpartition(".")
    if not dot:
        stem, suffix = suffix, ""
    suffix = suffix[:16]
    stem = stem[: MAX_NAME_CHARS - len(suffix) - 1]
    while len(f"{stem}.{suffix}".encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    stem = stem or "upload"
    return f"{stem}.{suffix}" if suffix else stem


@dataclass(frozen=True)
class Stored:
    source: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class SourceFile:
    name: str
    size_bytes: int
    mtime_ns: int


def list_sources(data_root: Path) -> list[SourceFile]:
    """The source files stored at the top of ``data_root``, sorted by name."""
    if not data_root.is_dir():
        return []
    found = []
    with os.scandir(data_root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the scan saw it
                continue
            found.append(SourceFile(entry.name, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda s: s.name)


def store_upload(chunks: Iterable[pb.UploadChunk], data_root: Path, limit: int) -> Stored:
    """Write the chunks to a temporary file in the data root, then link it in under its name."""
    stream: Iterator[pb.UploadChunk] = iter(chunks)
    first = next(stream, None)
    if first is None:
        raise DataError("the upload sent no chunks: the first chunk names the file")
    filename = first.filename
    if not filename:
        raise DataError("the first upload chunk must carry the file name")
    folder = data_root
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            chunk = first
            while chunk is not None:
                if chunk.filename and chunk.filename != filename:
                    raise DataError(
                        f"upload chunks name two files, {filename!r} and {chunk.filename!r}: "
                        "send one file per call"
                    )
                size += len(chunk.data)
                if size > limit:
                    raise DataError(f"upload {filename!r} is larger than the limit of {limit} bytes")
                digest.update(chunk.data)
                f.write(chunk.data)
                chunk = next(stream, None)
            f.flush()
            os.fsync(f.fileno())
        if size == 0:
            raise DataError(f"upload {filename!r} is empty")
        sha = digest.hexdigest()
        name = _place(tmp, folder, safe_name(filename), sha)
    finally:
        tmp.unlink(missing_ok=True)
    return Stored(name, size, sha)


def _place(tmp: Path, folder: Path, name: str, sha: str) -> str:
    """Link ``tmp`` in as ``name``, or as the hashed name when ``name`` holds other bytes.

    A hard link fails rather than replaces when the name exists, so two uploads racing for one name
    never overwrite each other.
    """
    stem, dot, suffix = name.rpartition(".")
    hashed = f"{stem}-{sha[:12]}.{suffix}" if dot else f"{name}-{sha[:12]}"
    for candidate in (name, hashed):
        try:
            os.link(tmp, folder / candidate)
            return candidate
        except FileExistsError:
            if _sha256(folder / candidate) == sha:
                return candidate
    raise DataError(f"cannot store the upload as {name!r}: {hashed!r} exists with other bytes")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
