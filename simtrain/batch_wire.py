"""Read a serialised ``Batch`` straight from the bytes gRPC hands over: the tensors are views, not copies.

Parsing with the generated class copies each tensor twice (into the message, then out of ``.data``);
at hundreds of MB/s that is most of a client's work. A Batch is a few tagged fields around two byte
strings, so we walk them ourselves. Any server may send the bytes, so everything is checked, and a
malformed message raises ``BatchError`` naming the problem; fields we do not know are skipped, as
protobuf does. On the same-host fast path a message names a /dev/shm slot file holding its tensors
instead (``simtrain.shm``), and they are copied out of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simtrain import protowire, shm

# Wire dtypes: packed little-endian, numpy-style names.
DTYPES = {"int64": "<i8", "int32": "<i4", "int16": "<i2", "uint8": "u1"}
# Bytes that are not a well-formed Batch: the wire reader's error, under the name callers know.
BatchError = protowire.WireError


@dataclass(frozen=True)
class Batches:
    """One Batch message: ``len(x)`` consecutive steps from ``step`` on, x and y [n, batch, block]."""

    step: int
    x: np.ndarray
    y: np.ndarray
    vocab_size: int

    def __len__(self) -> int:
        return len(self.x)


def _last(fields: list[tuple[int, int | memoryview]], number: int) -> int | memoryview | None:
    """A field's value; sent twice, the last one counts (protobuf's rule)."""
    found = [value for n, value in fields if n == number]
    return found[-1] if found else None


def _int(fields: list[tuple[int, int | memoryview]], number: int) -> int:
    """An int32/int64 field; negative numbers travel as their 64-bit two's complement."""
    value = _last(fields, number)
    if isinstance(value, memoryview):
        raise BatchError(f"field {number} should be a number")
    return 0 if value is None else value - (1 << 64) if value >= 1 << 63 else value


def _bytes(fields: list[tuple[int, int | memoryview]], number: int) -> memoryview:
    value = _last(fields, number)
    if isinstance(value, int):
        raise BatchError(f"field {number} should be bytes")
    return memoryview(b"") if value is None else value


@dataclass(frozen=True)
class _Tensor:
    """A Tensor message's fields, its data a view of the message."""

    what: str
    dtype: str
    shape: list[int]
    data: memoryview

    @property
    def nbytes(self) -> int:
        """The bytes dtype and shape call for (huge for a negative dimension, which reads as 2**64 - k)."""
        return math.prod(self.shape) * np.dtype(DTYPES[self.dtype]).itemsize

    def array(self, data: memoryview) -> np.ndarray:
        shape, dtype = self.shape, self.dtype
        wrong = BatchError(f"{self.what} has {len(data)} bytes for a {dtype} tensor of shape {shape}")
        if self.nbytes != len(data):
            raise wrong
        try:
            return np.frombuffer(data, dtype=DTYPES[dtype]).reshape(shape)
        except ValueError:  # e.g. [2**63, 0]: no bytes, but more dimensions than numpy holds
            raise wrong from None


def _tensor(buf: memoryview, what: str) -> _Tensor:
    fields = protowire.fields(buf)
    dtype = bytes(_bytes(fields, 1)).decode(errors="replace")
    if dtype not in DTYPES:
        raise BatchError(f"{what} has dtype {dtype!r}, not one of {', '.join(DTYPES)}")
    shape: list[int] = []
    for number, value in fields:  # packed, as proto3 sends it, or one varint per dimension
        if number != 2:
            continue
        if isinstance(value, int):
            shape.append(value)
            continue
        at = 0
        while at < len(value):
            dim, at = protowire.read_varint(value, at)
            shape.append(dim)
    return _Tensor(what, dtype, shape, _bytes(fields, 3))


def _from_slot(
    reader: shm.ShmReader | None, name: str, x: _Tensor, y: _Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """x and y copied out of the fast-path slot ``name``, which holds x's bytes then y's."""
    if reader is None:
        raise BatchError("the message names a shared-memory file, but the request offered none")
    if len(x.data) or len(y.data):
        raise BatchError("the message has tensor bytes and names a shared-memory file too")
    if not 0 < x.nbytes + y.nbytes <= shm.MAX_SLOT_BYTES:
        raise BatchError(f"x of shape {x.shape} and y of shape {y.shape} do not fit a shared-memory file")
    data = reader.read(name, x.nbytes + y.nbytes)
    return x.array(data[: x.nbytes]), y.array(data[x.nbytes :])


def decode(data: bytes, reader: shm.ShmReader | None = None) -> Batches:
    """The Batch message in ``data``, its tensors read-only views of ``data`` (which they keep alive).

    With a ``reader`` (the request carried a probe), a message naming a /dev/shm slot file has its
    tensors there: they are copied out (freeing the slot) into memory of their own. A slot that
    cannot be read raises ``shm.ShmError``, and the client streams bytes instead.
    """
    fields = protowire.fields(memoryview(data))
    name = bytes(_bytes(fields, 6)).decode(errors="replace")
    xt, yt = _tensor(_bytes(fields, 2), "x"), _tensor(_bytes(fields, 3), "y")
    x, y = _from_slot(reader, name, xt, yt) if name else (xt.array(xt.data), yt.array(yt.data))
    n = _int(fields, 5) or 1
    if x.ndim == 2 and n == 1:
        x, y = x[None], y[None]
    elif x.ndim != 3 or len(x) != n:
        raise BatchError(f"a message of {n} batches has x of shape {list(x.shape)}, not [{n}, batch, block]")
    if x.shape != y.shape:
        raise BatchError(f"x has shape {list(x.shape)} but y {list(y.shape)}")
    return Batches(_int(fields, 1), x, y, _int(fields, 4))
