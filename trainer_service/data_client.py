"""The trainer's side of the data protocol: prepare datasets, stream batches, decode samples.

Every call retries with exponential backoff while the data service is unreachable, so a restart of
the data service costs a pause, not a job. A broken stream resumes at the exact step it stopped at,
which is safe because batches are a pure function of (seed, step, rank).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import numpy as np
import torch

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.jobs import DatasetSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

# Codes worth retrying: the server is down, restarting or overloaded. Anything else is final.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
DTYPES = {"int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "uint8": torch.uint8}


class DataServiceError(RuntimeError):
    """A data service call failed for good; the message is meant for the job's owner."""


def tensor_from_proto(t: pb.Tensor, data: bytes | None = None) -> torch.Tensor:
    """Wrap the message's bytes as a tensor without copying them (``data``: ``t.data``, if already read).

    The tensor shares the bytes object's memory and keeps it alive; protobuf bytes are read-only, and the
    trainer never writes into batch tensors.
    """
    if t.dtype not in DTYPES:
        raise DataServiceError(f"data service sent a tensor of unsupported dtype {t.dtype!r}")
    dtype = DTYPES[t.dtype]
    shape = tuple(t.shape)
    data = t.data if data is None else data  # each read of a bytes field may build a new object
    expected = dtype.itemsize * int(torch.Size(shape).numel())
    if len(data) != expected:
        raise DataServiceError(f"data service sent {len(data)} bytes for a {t.dtype} tensor of {shape}")
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    if sys.byteorder != "little":  # the wire is little-endian: a big-endian host needs a converted copy
        wire = np.frombuffer(data, dtype=np.dtype(t.dtype).newbyteorder("<"))
        return torch.from_numpy(wire.astype(t.dtype).reshape(shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the buffer is not writable"
        return torch.frombuffer(data, dtype=dtype).view(shape)


def check_ids(x: torch.Tensor, y: torch.Tensor, vocab_size: int, step: int) -> None:
    if x.shape != y.shape:
        raise DataServiceError(f"data service sent x of shape {tuple(x.shape)} but y of {tuple(y.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab_size):
        raise DataServiceError(f"batch {step} has input ids outside [0, {vocab_size}): not this dataset's")
    if y.numel() and (int(y.min()) < -1 or int(y.max()) >= vocab_size):
        raise DataServiceError(f"batch {step} has target ids outside [-1, {vocab_size}): not this dataset's")


class DataClient:
    def __init__(
        self, address: str, retries: int = 5, backoff_s: float = 0.2, max_message_bytes: int = 64 << 20
    ):
        self.address = address
        self.retries = retries
        self.backoff_s = backoff_s
        options = [("grpc.max_receive_message_length", max_message_bytes)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb_grpc.DataServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or attempt == self.retries:
                    raise self._error(what, e) from None
                delay = self.backoff_s * 2**attempt
                log.warning("%s: data service %s unavailable, retrying in %.1fs", what, self.address, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _error(self, what: str, e: grpc.RpcError) -> DataServiceError:
        if e.code() in RETRYABLE:
            return DataServiceError(
                f"{what}: data service at {self.address} is unreachable "
                f"after {self.retries + 1} attempts ({e.details()})"
            )
        return DataServiceError(f"{what}: {e.details()} ({e.code().name})")

    def prepare(self, spec: DatasetSpec) -> pb.DatasetInfo:
        """Prepare (or find) the dataset a job names, and describe it."""
        if spec.id is not None:
            return self._with_retries(
                "describe dataset", lambda: self.stub.GetDataset(pb.GetDatasetRequest(dataset_id=spec.id))
            )
        request = pb.PrepareDatasetRequest(
            module=spec.module,
            source=spec.source,
            tokenizer=spec.tokenizer,
            packing=spec.packing,
            options={k: str(v) for k, v in spec.options.items()},
        )
        return self._with_retries("prepare dataset", lambda: self.stub.PrepareDataset(request))

    def decode(self, dataset_id: str, tokens: list[int]) -> str:
        request = pb.DecodeRequest(dataset_id=dataset_id, tokens=tokens)
        return self._with_retries("decode", lambda: self.stub.Decode(request)).text

    def batches(
        self,
        dataset_id: str,
        split: str,
        batch_size: int,
        block_size: int,
        seed: int,
        start_step: int,
        num_steps: int,
        rank: int = 0,
        world_size: int = 1,
        vocab_size: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``num_steps`` batches ``(x, y)`` starting at ``start_step``, reconnecting as needed.

        With ``vocab_size`` (the model's), every batch is checked to hold only ids below it (and -1 in y):
        one bad id would otherwise end a CUDA job with a device-side assert instead of a message.
        """
        step, end = start_step, start_step + num_steps
        failures = 0
        while step < end:
            request = pb.StreamBatchesRequest(
                dataset_id=dataset_id,
                split=split,
                batch_size=batch_size,
                block_size=block_size,
                seed=seed,
                start_step=step,
                num_steps=end - step,
                rank=rank,
                world_size=world_size,
            )
            try:
                for batch in self.stub.StreamBatches(request):
                    if batch.step != step:
                        raise DataServiceError(f"data service sent step {batch.step}, expected {step}")
                    x, y = tensor_from_proto(batch.x), tensor_from_proto(batch.y)
                    if vocab_size is not None:
                        check_ids(x, y, vocab_size, step)
                    yield x, y
                    step += 1
                    failures = 0
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or failures == self.retries:
                    raise self._error(f"stream {split} batches", e) from None
                delay = self.backoff_s * 2**failures
                failures += 1
                log.warning(
                    "batch stream broke at step %d (%s); resuming in %.1fs", step, e.code().name, delay
                )
                time.sleep(delay)
            else:
                if step < end:
                    raise DataServiceError(f"data service ended the {split} stream early, at step {step}")
