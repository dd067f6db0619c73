"""The batch path on the trainer's side: zero-copy tensors from gRPC bytes, and the prefetch thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from data_service.wire import encode_batch
from simtrain.data.v1 import data_service_pb2 as pb
from trainer_service.data_client import DataClient, DataServiceError, batches_per_message, check_ids
from trainer_service.prefetch import Prefetcher


def test_batches_are_views_of_the_message_bytes() -> None:
    windows = np.arange(3 * 2 * 5, dtype=np.uint16).reshape(3, 2, 5)
    message = encode_batch(4, windows[..., :-1], windows[..., 1:], 100)
    batches = list(DataClient._split(message, step=4, end=10))
    assert len(batches) == 3
    for i, (x, y) in enumerate(batches):
        assert torch.equal(x, torch.from_numpy(windows[i, :, :-1].astype(np.int64)))
        assert torch.equal(y, torch.from_numpy(windows[i, :, 1:].astype(np.int64)))
    start = np.frombuffer(message, dtype=np.uint8).ctypes.data
    assert start < batches[0][0].data_ptr() < start + len(message)  # the same memory, not a copy


def test_a_message_with_other_steps_or_malformed_is_refused() -> None:
    windows = np.zeros((3, 2, 5), dtype=np.uint16)
    message = encode_batch(4, windows[..., :-1], windows[..., 1:], 100)
    with pytest.raises(DataServiceError, match="sent steps 4..6, expected from 5"):
        DataClient._split(message, step=5, end=10)
    with pytest.raises(DataServiceError, match="to at most 5"):
        DataClient._split(message, step=4, end=6)  # more batches than were asked for
    bad = pb.Batch(step=4, x=pb.Tensor(dtype="float8", shape=[1], data=b"\0")).SerializeToString()
    with pytest.raises(DataServiceError, match="malformed batch at step 4: x has dtype 'float8'"):
        DataClient._split(bad, step=4, end=10)


def test_batches_per_message_fills_about_two_mib() -> None:
    assert batches_per_message(64, 256) == 8  # 256 KiB a batch
    assert batches_per_message(512, 1024) == 1  # 8 MiB a batch: one
    assert batches_per_message(2, 8) == 64  # tiny batches: at most 64


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
