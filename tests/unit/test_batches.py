"""The batch path on the trainer's side: zero-copy tensors from gRPC bytes, and the prefetch thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from simtrain.data.v1 import data_service_pb2 as pb
from trainer_service.data_client import DataServiceError, check_ids, tensor_from_proto
from trainer_service.prefetch import Prefetcher


def test_tensor_wraps_the_message_bytes_without_copying() -> None:
    values = np.arange(12, dtype="<i8").reshape(3, 4)
    message = pb.Tensor(dtype="int64", shape=[3, 4], data=values.tobytes())
    data = message.data
    tensor = tensor_from_proto(message, data)
    assert torch.equal(tensor, torch.from_numpy(values))
    assert tensor.data_ptr() == np.frombuffer(data, dtype=np.uint8).ctypes.data  # the same memory


def test_tensor_checks_dtype_and_size() -> None:
    with pytest.raises(DataServiceError, match="unsupported dtype"):
        tensor_from_proto(pb.Tensor(dtype="float8", shape=[1], data=b"\0"))
    with pytest.raises(DataServiceError, match="7 bytes"):
        tensor_from_proto(pb.Tensor(dtype="int64", shape=[1], data=b"\0" * 7))


def test_prefetcher_keeps_k_items_ready_and_transforms_them_in_its_thread() -> None:
    made: list[int] = []
    threads: set[str] = set()

    def source():
        for i in range(10):
            made.append(i)
            yield i

    def double(i: int) -> int:
        threads.add(threading.current_thread().name)
        return 2 * i

    prefetcher = Prefetcher(source(), depth=3, transform=double)
    deadline = time.monotonic() + 5
    while len(made) < 4 and time.monotonic() < deadline:  # 3 queued, one more waiting to go in
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(made) == 4  # K ready, and no further ahead than that
    assert list(prefetcher) == [2 * i for i in range(10)]
    assert threads == {"prefetch"}
    prefetcher.close()


def test_prefetcher_hands_errors_to_the_consumer() -> None:
    def broken():
        yield 1
        raise DataServiceError("stream broke")

    prefetcher = Prefetcher(broken())
    assert next(prefetcher) == 1
    with pytest.raises(DataServiceError, match="stream broke"):
        next(prefetcher)
    prefetcher.close()


def test_ids_outside_the_vocabulary_are_refused_with_a_message() -> None:
    x = torch.tensor([[1, 2, 3]])
    check_ids(x, torch.tensor([[2, 3, -1]]), vocab_size=4, step=0)
    with pytest.raises(DataServiceError, match="batch 7 has input ids outside"):
        check_ids(torch.tensor([[1, 4, 3]]), x, vocab_size=4, step=7)
    with pytest.raises(DataServiceError, match="target ids outside"):
        check_ids(x, torch.tensor([[2, 3, -2]]), vocab_size=4, step=0)
