"""The server's side of the same-host fast path: write each message's tensors into a /dev/shm slot.

A stream has up to SLOTS slot files (layout in ``simtrain.shm``), reused round robin: the ids are
widened to int64 straight into the slot's mapping (one pass, as ``wire`` does into a message buffer),
and the Batch message carries only the slot's name. Before reusing a slot the writer waits for the
client to have copied it out, which holds a slow client's stream back and bounds the /dev/shm a
stream uses to SLOTS messages. The files are removed when the stream ends, however it ends; a
server that dies leaves them, so the writer holds a lock on each, and every new fast-path stream
sweeps away slot files that nobody holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import secrets
import threading
import time
from collections.abc import Callable

import numpy as np

import simtrain.shm
from simtrain.shm import FREE, FULL, HEADER_BYTES, MAGIC, STATE, open_in_shm, take_probe

SLOTS = 4
SLOT_NAME = re.compile(r"simtrain-[0-9a-f]{16}-[0-9]+")
# A slot file unlocked for this long belongs to no live server (a new one is locked at once).
ORPHAN_AGE_S = 2.0
# The wait for the client to free a slot polls this often at first, backing off to POLL_MAX_S.
POLL_S, POLL_MAX_S = 0.0001, 0.002


class ShmWriter:
    """The slot files of one stream, named ``simtrain-<random>-<i>``: none is ever a client's name."""

    def __init__(self, slot_bytes: int) -> None:
        self.prefix = f"simtrain-{secrets.token_hex(8)}"
        self.slot_bytes = slot_bytes
        self.slots: list[tuple[str, mmap.mmap, int]] = []
        self.count = 0
        # close() comes from gRPC's thread when the RPC ends, maybe while the stream's thread writes.
        self.lock = threading.Lock()
        self.closed = False

    @classmethod
    def for_probe(cls, probe: str, slot_bytes: int) -> ShmWriter | None:
        """A writer if the client's probe shows it shares our /dev/shm (and user), else None."""
        if not (probe and take_probe(probe)):
            return None
        sweep()
        return cls(slot_bytes)

    def write(self, x: np.ndarray, y: np.ndarray, active: Callable[[], bool]) -> str | None:
        """Write x then y as int64 into the next free slot and return its name; None if the stream ended."""
        i = self.count % SLOTS
        self.count += 1
        if i == len(self.slots):
            if not self._add_slot():
                return None
        elif not self._wait(active, [i]):
            return None
        with self.lock:
            if self.closed:
                return None
            name, mm, _ = self.slots[i]
            out = np.frombuffer(mm, dtype="<i8", count=x.size + y.size, offset=HEADER_BYTES)
            out[: x.size].reshape(x.shape)[...] = x
            out[x.size :].reshape(y.shape)[...] = y
            del out  # the mapping cannot close while a view of it lives
            mm[STATE] = FULL
        return name

    def _add_slot(self) -> bool:
        with self.lock:
            if self.closed:
                return False
            name = f"{self.prefix}-{len(self.slots)}"
            fd = open_in_shm(name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # held while we live: see sweep()
                # Allocated now, so a full /dev/shm is an error here rather than a SIGBUS on writing.
                os.posix_fallocate(fd, 0, HEADER_BYTES + self.slot_bytes)
                mm = mmap.mmap(fd, HEADER_BYTES + self.slot_bytes, flags=mmap.MAP_SHARED)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(simtrain.shm.SHM_DIR / name)
                os.close(fd)
                raise
            mm[: len(MAGIC)] = MAGIC
            self.slots.append((name, mm, fd))
            return True

    def drain(self, active: Callable[[], bool]) -> None:
        """Wait for the client to copy out every slot: the stream's last messages reach it before it
        reads their slots, and ending the stream first would remove them."""
        self._wait(active, range(len(self.slots)))

    def _wait(self, active: Callable[[], bool], slots: list[int] | range) -> bool:
        """Wait until the client has freed ``slots``; False if the stream ends meanwhile."""
        delay = POLL_S
        while True:
            with self.lock:
                if self.closed:
                    return False
                if all(self.slots[i][1][STATE] == FREE for i in slots):
                    return True
            if not active():
                return False
            time.sleep(delay)
            delay = min(2 * delay, POLL_MAX_S)

    def close(self) -> None:
        """Remove this stream's slot files (it ended, was cancelled, or the client died)."""
        with self.lock:
            self.closed = True
            for name, mm, fd in self.slots:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(simtrain.shm.SHM_DIR / name)
                mm.close()
                os.close(fd)
            self.slots.clear()


def sweep() -> None:
    """Remove the slot files of servers that died (killed mid-stream): no one holds their lock."""
    with os.scandir(simtrain.shm.SHM_DIR) as entries:
        names = [e.name for e in entries if SLOT_NAME.fullmatch(e.name)]
    for name in names:
        with contextlib.suppress(OSError):
            fd = open_in_shm(name, os.O_RDONLY)
            try:
                st = os.fstat(fd)
                if time.time() - st.st_ctime > ORPHAN_AGE_S and st.st_uid == os.geteuid():
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a live server holds it
                    os.unlink(simtrain.shm.SHM_DIR / name)
            finally:
                os.close(fd)
