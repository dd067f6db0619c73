"""The few pieces of the protobuf wire format we read and write by hand, where the generated classes
would copy too much (batches) or are not ours to have (Anki's notetype config)."""

from __future__ import annotations

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """Bytes that are not well-formed protobuf."""


def varint(n: int) -> bytes:
    """A protobuf varint; negative numbers take ten bytes, as int64 does on the wire."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes | memoryview, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the position after it."""
    value = shift = 0
    while shift < 64:
        if at >= len(buf):
            raise WireError("the message ends inside a number")
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7
    raise WireError("a number runs past ten bytes")


def fields(buf: memoryview) -> list[tuple[int, int | memoryview]]:
    """(field number, value) in order: varints as ints, length-delimited fields as views (no copy).
    Fixed-width fields are skipped: nothing we read uses them."""
    out: list[tuple[int, int | memoryview]] = []
    at = 0
    while at < len(buf):
        key, at = read_varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, at = read_varint(buf, at)
            out.append((number, value))
        elif wire == BYTES:
            length, at = read_varint(buf, at)
            if at + length > len(buf):
                raise WireError(f"field {number} claims {length} bytes, past the end of the message")
            out.append((number, buf[at : at + length]))
            at += length
        elif wire in (FIXED64, FIXED32):
            at += 8 if wire == FIXED64 else 4
        else:
            raise WireError(f"field {number} has wire type {wire}, which none of ours holds")
    if at > len(buf):
        raise WireError("the message ends inside a field")
    return out
