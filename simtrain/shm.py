"""The same-host fast path's shared parts: the probe, the slot file layout, and the client's reader.

On one host, gRPC's byte copies (three on receipt, two on send, under the GIL) are most of a batch
stream's CPU. A client shows it shares the server's /dev/shm by creating a probe file there; the
server then writes each message's tensors into one of a few slot files in /dev/shm, reused round
robin, and sends only the slot's name. A slot file starts with MAGIC and a state word (1: full, 0:
free), the tensors at HEADER_BYTES. The client copies them out (one copy: the trainer keeps batches
as long as it likes) and sets the word to 0; the server waits for that before reusing the slot, which
is the stream's backpressure. Reusing slots matters: a fresh tmpfs page costs more than a copy.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SHM_DIR = Path("/dev/shm")
# The names either side accepts: plain file names, never a path.
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
MAGIC = b"SIMTSHM1"
STATE = slice(8, 16)  # the state word's bytes: FULL while the slot holds a message, FREE once copied out
FULL, FREE = (1).to_bytes(8, "little"), bytes(8)
HEADER_BYTES = 64
# A client maps at most this many slot files of one stream (a server uses a few).
MAX_SLOTS = 16
MAX_SLOT_BYTES = 1 << 30


class ShmError(Exception):
    """A slot file that cannot be used (gone, not ours, the wrong size): stream bytes instead."""


def open_in_shm(name: str, flags: int, mode: int = 0o600) -> int:
    """Open a plain name in SHM_DIR only, never following a link (the other side names the files)."""
    if NAME.fullmatch(name) is None:
        raise ShmError(f"{name!r} is not a plain file name")
    return os.open(SHM_DIR / name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


@contextlib.contextmanager
def probe() -> Iterator[str | None]:
    """A probe file holding its own name, for the length of a stream; None where there is no /dev/shm."""
    name = f"simtrain-probe-{secrets.token_hex(16)}"
    try:
        fd = open_in_shm(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError:
        yield None
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(name.encode())
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(SHM_DIR / name)


def take_probe(name: str) -> bool:
    """Whether ``name`` is a probe a client on this host made (a regular file of our user holding its
    name); one that is gets deleted, so even a client killed mid-stream leaves none behind."""
    try:
        fd = open_in_shm(name, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ShmError):
        return False
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > 256:
            return False
        if f.read(257) != name.encode():
            return False
    with contextlib.suppress(OSError):
        os.unlink(SHM_DIR / name)
    return True


class ShmReader:
    """The slot files of one stream, mapped on first sight; ``read`` copies a message's bytes out."""

    def __init__(self) -> None:
        self.slots: dict[str, mmap.mmap] = {}

    def read(self, name: str, nbytes: int) -> memoryview:
        """The ``nbytes`` of tensors in slot ``name``, copied into memory of our own; frees the slot."""
        mm = self.slots.get(name) or self._map(name)
        if not 0 < nbytes <= len(mm) - HEADER_BYTES or mm[STATE] != FULL:
            raise ShmError(f"the slot file {name!r} holds no message of {nbytes} bytes")
        out = np.empty(nbytes, dtype=np.uint8)
        out[:] = np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=HEADER_BYTES)
        mm[STATE] = FREE
        return memoryview(out)

    def _map(self, name: str) -> mmap.mmap:
        """Map a slot file: a regular file of our user, starting with MAGIC (so no other file is written)."""
        if len(self.slots) >= MAX_SLOTS:
            raise ShmError(f"the server named more than {MAX_SLOTS} slot files")
        try:
            fd = open_in_shm(name, os.O_RDWR)
        except OSError as e:
            raise ShmError(f"cannot open the slot file {name!r}: {e.strerror or e}") from None
        try:
            size = _slot_size(fd)
            if not size:
                raise ShmError(f"{name!r} is not a slot file of this user")
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        except OSError as e:
            raise ShmError(f"cannot map the slot file {name!r}: {e}") from None
        finally:
            os.close(fd)
        self.slots[name] = mm
        return mm

    def close(self) -> None:
        """Unmap the slots and delete the stream's slot files: the server does too, unless it died
        mid-stream, maybe leaving slots (``<prefix>-<i>``) the client never saw."""
        prefixes = {name.rpartition("-")[0] for name in self.slots}
        for mm in self.slots.values():
            mm.close()
        self.slots.clear()
        for name in (f"{prefix}-{i}" for prefix in prefixes for i in range(MAX_SLOTS)):
            with contextlib.suppress(OSError, ShmError):
                fd = open_in_shm(name, os.O_RDONLY)
                try:
                    if _slot_size(fd):
                        os.unlink(SHM_DIR / name)
                finally:
                    os.close(fd)


def _slot_size(fd: int) -> int:
    """The size of the open file if it is a slot file (regular, of our user, starting with MAGIC), else 0."""
    st = os.fstat(fd)
    slot = (
        stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and HEADER_BYTES < st.st_size <= MAX_SLOT_BYTES
    )
    return st.st_size if slot and os.pread(fd, len(MAGIC), 0) == MAGIC else 0
