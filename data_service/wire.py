"""``Batch`` messages encoded by hand, straight from numpy arrays.

Building a protobuf ``Batch`` copies each tensor into the message and again when serialising it; at
hundreds of MB/s those copies are most of the server's work. The protobuf wire format of a Batch is
simple (a few tagged fields around two byte strings), so we write it ourselves with one copy of the
data, and the gRPC method passes these bytes through. A test checks the bytes equal protobuf's own.
Reading them back is ``simtrain.batch_wire``'s job, shared with the trainer.
"""

from __future__ import annotations

import functools

import numpy as np

from simtrain.protowire import varint

# (field number << 3) | wire type; 0 = varint, 2 = length-delimited.
_STEP, _X, _Y, _VOCAB, _NUM_BATCHES = b"\x08", b"\x12", b"\x1a", b"\x20", b"\x28"
_DTYPE, _SHAPE, _DATA = b"\x0a", b"\x12", b"\x1a"


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
    """The serialised ``Batch{step, x, y, vocab_size}`` with int64 little-endian tensors.

    x and y are [batch, block] for one step, or [n, batch, block] for n steps from ``step`` on (the
    message then says ``num_batches`` n).
    """
    heads = []
    for tag, a in ((_X, x), (_Y, y)):
        nbytes = a.size * 8
        head = _tensor_head(tuple(a.shape), nbytes, "int64")
        heads.append(tag + varint(len(head) + nbytes) + head)
    start = (_STEP + varint(step)) if step else b""
    end = (_VOCAB + varint(vocab_size)) if vocab_size else b""
    if x.ndim == 3:
        end += _NUM_BATCHES + varint(x.shape[0])
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
