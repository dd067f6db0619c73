"""Our hand-encoded Batch bytes are exactly what protobuf would send, and read back in place."""

import numpy as np
import pytest

from data_service.wire import encode_batch
from simtrain.batch_wire import BatchError, decode
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.protowire import varint


@pytest.mark.parametrize(
    ("step", "shape", "vocab"), [(0, (2, 3), 5), (300, (64, 256), 50_000), (2**40, (1, 1), 0), (7, (0, 4), 3)]
)
def test_encoded_batch_equals_protobuf(step: int, shape: tuple[int, int], vocab: int):
    rng = np.random.default_rng(step)
    x, y = rng.integers(-1, 1000, shape), rng.integers(-1, 1000, shape).astype(np.int32)
    expected = pb.Batch(
        step=step,
        x=pb.Tensor(dtype="int64", shape=list(shape), data=x.astype("<i8").tobytes()),
        y=pb.Tensor(dtype="int64", shape=list(shape), data=y.astype("<i8").tobytes()),
        vocab_size=vocab,
    )
    encoded = encode_batch(step, x, y, vocab)
    assert encoded == expected.SerializeToString()
    assert pb.Batch.FromString(encoded) == expected


def test_varint():
    assert varint(0) == b"\x00" and varint(127) == b"\x7f" and varint(300) == b"\xac\x02"
    assert len(varint(-1)) == 10


def test_several_batches_encode_as_protobuf_would():
    windows = np.random.default_rng(1).integers(0, 70, (3, 4, 9)).astype(np.uint16)
    expected = pb.Batch(
        step=5,
        x=pb.Tensor(dtype="int64", shape=[3, 4, 8], data=windows[..., :-1].astype("<i8").tobytes()),
        y=pb.Tensor(dtype="int64", shape=[3, 4, 8], data=windows[..., 1:].astype("<i8").tobytes()),
        vocab_size=70,
        num_batches=3,
    )
    assert encode_batch(5, windows[..., :-1], windows[..., 1:], 70) == expected.SerializeToString()


def test_decode_views_the_tensors_in_place():
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 500, (4, 9)).astype(np.uint16)
    data = encode_batch(12, windows[..., :-1], windows[..., 1:], 500)
    batches = decode(data)
    assert (batches.step, batches.vocab_size, len(batches)) == (12, 500, 1)
    np.testing.assert_array_equal(batches.x[0], windows[:, :-1])
    np.testing.assert_array_equal(batches.y[0], windows[:, 1:])
    x = batches.x
    assert x.dtype == np.dtype("<i8") and not x.flags.writeable and x.base is not None
    # Step 0 and vocab 0 are left out on the wire, as protobuf does.
    empty = decode(encode_batch(0, windows[..., :-1], windows[..., 1:], 0))
    assert (empty.step, empty.vocab_size) == (0, 0)


def test_a_message_of_several_batches_decodes_to_the_single_ones():
    windows = np.random.default_rng(2).integers(0, 90, (5, 3, 7)).astype(np.uint16)
    packed = decode(encode_batch(20, windows[..., :-1], windows[..., 1:], 90))
    assert (packed.step, len(packed)) == (20, 5)
    for i in range(5):
        one = decode(encode_batch(20 + i, windows[i][..., :-1], windows[i][..., 1:], 90))
        np.testing.assert_array_equal(packed.x[i], one.x[0])
        np.testing.assert_array_equal(packed.y[i], one.y[0])


def test_decode_reads_what_other_encoders_may_send():
    """Another server may send int32 ids, unknown fields, or the shape unpacked; all read the same."""
    x = np.arange(6, dtype="<i4").reshape(2, 3)
    message = pb.Batch(
        step=-3,
        x=pb.Tensor(dtype="int32", shape=[2, 3], data=x.tobytes()),
        y=pb.Tensor(dtype="int32", shape=[2, 3], data=x.tobytes()),
        vocab_size=9,
    ).SerializeToString()
    extra = b"\x50\x07" + b"\x39" + bytes(8) + b"\x42\x02hi" + b"\x4d" + bytes(4)  # fields 10, 7, 8, 9
    batches = decode(message + extra)
    assert (batches.step, batches.vocab_size) == (-3, 9)
    np.testing.assert_array_equal(batches.x[0], x)
    unpacked_shape = b"\x0a\x05int32" + b"\x10\x02\x10\x03" + b"\x1a\x18" + x.tobytes()
    tensor = b"\x12" + bytes([len(unpacked_shape)]) + unpacked_shape
    np.testing.assert_array_equal(decode(tensor + b"\x1a" + tensor[1:]).y[0], x)


# A well-formed y, so that x's faults are the ones found.
Y = pb.Tensor(dtype="int64", shape=[1], data=bytes(8))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\x08", "ends inside a number"),
        (b"\x08" + b"\xff" * 11, "past ten bytes"),
        (b"\x12\x10abc", "past the end"),
        (b"\x0b", "wire type 3"),
        (b"\x10\x01", "field 2 should be bytes"),
        (pb.Batch(x=pb.Tensor(dtype="float8")).SerializeToString(), "dtype 'float8'"),
        (pb.Batch(x=pb.Tensor(dtype="int64", shape=[2], data=bytes(7)), y=Y).SerializeToString(), "7 bytes"),
        (
            pb.Batch(x=pb.Tensor(dtype="int64", shape=[-1, -1], data=bytes(8)), y=Y).SerializeToString(),
            "8 bytes",
        ),
        (pb.Batch(x=pb.Tensor(dtype="int64", shape=[2**62, 0]), y=Y).SerializeToString(), "0 bytes"),
        (pb.Batch(x=pb.Tensor(dtype="int64", shape=[1], data=bytes(8))).SerializeToString(), "y has dtype"),
        (
            pb.Batch(
                x=pb.Tensor(dtype="int64", shape=[1], data=bytes(8)),
                y=pb.Tensor(dtype="int64", shape=[2], data=bytes(16)),
            ).SerializeToString(),
            "a message of 1 batches has x of shape [1]",
        ),
        (encode_batch(0, np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), 3) + b"\x28\x03", "of 3 batches"),
        (encode_batch(0, np.zeros((1, 2)), np.zeros((1, 3)), 3), "x has shape [1, 1, 2] but y [1, 1, 3]"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(message: bytes, expected: str):
    with pytest.raises(BatchError, match=expected.replace("[", r"\[")):
        decode(message)
