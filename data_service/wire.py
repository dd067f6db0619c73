"""``Batch`` messages encoded by hand, straight from numpy arrays.

Building a protobuf ``Batch`` copies each tensor into the message and again when serialising it; at
hundreds of MB/s those copies are most of the server's work. The protobuf wire format of a Batch is
simple (a few tagged fields around two byte strings), so we write it ourselves with one copy of the
data, and the gRPC method passes these bytes through. A test checks the bytes equal protobuf's own.
"""

from __future__ import annotations

import functools

import numpy as np

# (field number << 3) | wire type; 0 = varint, 2 = length-delimited.
_STEP, _X, _Y, _VOCAB = b"\x08", b"\x12", b"\x1a", b"\x20"
_DTYPE, _SHAPE, _DATA = b"\x0a", b"\x12", b"\x1a"


def varint(n: int) -> bytes:
    """A protobuf varint; negative numbers take ten bytes, as int64 does on the wire."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.lru_cache(maxsize=256)
def _tensor_head(shape: tuple[int, ...], nbytes: int, dtype: str) -> bytes:
    """Everything of a Tensor message before its data bytes, and the data's own tag and length."""
    name = dtype.encode()
    dims = b"".join(varint(d) for d in shape)
    head = _DTYPE + varint(len(name)) + name
    if dims:
        head += _SHAPE + varint(len(dims)) + dims
    if nbytes:
        head += _DATA + varint(nbytes)
    return head


def encode_batch(step: int, x: np.ndarray, y: np.ndarray, vocab_size: int) -> bytes:
    """The serialised ``Batch{step, x, y, vocab_size}`` with int64 little-endian tensors."""
    return _encode(step, x, y, vocab_size)


def encode_windows(step: int, windows: np.ndarray, vocab_size: int) -> bytes:
    """The Batch for token windows [batch, block + 1]: x is each window but its last token, y each
    window but its first. The ids are widened to int64 straight into the message buffer."""
    return _encode(step, windows[:, :-1], windows[:, 1:], vocab_size)


def _encode(step: int, x: np.ndarray, y: np.ndarray, vocab_size: int) -> bytes:
    heads = []
    for tag, a in ((_X, x), (_Y, y)):
        nbytes = a.size * 8
        head = _tensor_head(tuple(a.shape), nbytes, "int64")
        heads.append(tag + varint(len(head) + nbytes) + head)
    start = (_STEP + varint(step)) if step else b""
    end = (_VOCAB + varint(vocab_size)) if vocab_size else b""
    # np.empty, not bytearray: the buffer is written whole, so zero-filling it first is a wasted pass.
    buf = np.empty(len(start) + sum(len(h) for h in heads) + (x.size + y.size) * 8 + len(end), dtype=np.uint8)
    at = 0
    for part, a in ((start, None), (heads[0], x), (heads[1], y), (end, None)):
        buf[at : at + len(part)] = np.frombuffer(part, dtype=np.uint8)
        at += len(part)
        if a is not None and a.size:
            # One pass: read the ids (any integer dtype, any strides) and write them as int64.
            buf[at : at + a.size * 8].view("<i8").reshape(a.shape)[...] = a
            at += a.size * 8
    return buf.tobytes()


def _read_varint(buf: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(buf: memoryview) -> dict[int, int | memoryview]:
    """Top-level fields of a message: varints as ints, length-delimited ones as views (no copy)."""
    out: dict[int, int | memoryview] = {}
    at = 0
    while at < len(buf):
        key, at = _read_varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], at = _read_varint(buf, at)
        elif wire == 2:
            length, at = _read_varint(buf, at)
            out[number] = buf[at : at + length]
            at += length
        else:
            raise ValueError(f"unexpected wire type {wire} in a Batch")
    return out


_NUMPY = {"int64": "<i8", "int32": "<i4", "int16": "<i2", "uint8": "u1"}


def _tensor(buf: memoryview) -> np.ndarray:
    fields = _fields(buf)
    dtype = bytes(fields.get(1, b"")).decode()  # type: ignore[arg-type]
    shape: list[int] = []
    packed = fields.get(2, memoryview(b""))
    at = 0
    while at < len(packed):  # type: ignore[arg-type]
        dim, at = _read_varint(packed, at)  # type: ignore[arg-type]
        shape.append(dim)
    data = fields.get(3, memoryview(b""))
    return np.frombuffer(data, dtype=_NUMPY[dtype]).reshape(shape)  # type: ignore[arg-type]


def decode_batch(data: bytes) -> tuple[int, np.ndarray, np.ndarray, int]:
    """(step, x, y, vocab_size) of a serialised Batch, with x and y viewing ``data`` (no copy).

    A client that receives raw bytes (an identity deserializer) saves protobuf's two copies of the
    tensors; the arrays are read-only views.
    """
    fields = _fields(memoryview(data))
    return (
        int(fields.get(1, 0)),  # type: ignore[arg-type]
        _tensor(fields[2]),  # type: ignore[arg-type]
        _tensor(fields[3]),  # type: ignore[arg-type]
        int(fields.get(4, 0)),  # type: ignore[arg-type]
    )
