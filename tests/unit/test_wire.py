"""Our hand-encoded Batch bytes are exactly what protobuf would send."""

import numpy as np
import pytest

from data_service.wire import decode_batch, encode_batch, encode_windows, varint
from simtrain.data.v1 import data_service_pb2 as pb


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


def test_decode_batch_views_the_tensors_in_place():
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 500, (4, 9)).astype(np.uint16)
    data = encode_windows(12, windows, 500)
    step, x, y, vocab = decode_batch(data)
    assert (step, vocab) == (12, 500)
    np.testing.assert_array_equal(x, windows[:, :-1])
    np.testing.assert_array_equal(y, windows[:, 1:])
    assert x.dtype == np.dtype("<i8") and not x.flags.writeable and x.base is not None
    # Step 0 and vocab 0 are left out on the wire, as protobuf does.
    assert decode_batch(encode_windows(0, windows, 0))[::3] == (0, 0)
