"""The trainer's side of the data protocol: prepare datasets, stream batches, decode samples.

Every call retries with exponential backoff while the data service is unreachable, so a restart of
the data service costs a pause, not a job. A broken stream resumes at the exact step it stopped at,
which is safe because batches are a pure function of (seed, step, rank).

Batches arrive as raw message bytes and become tensors in place (``simtrain.batch_wire``), several
to a message where the server agrees: per-message costs, not bytes, bound a Python gRPC stream. On
the data service's own host they skip gRPC's byte copies where the server agrees: each message names
a /dev/shm slot holding its tensors (``simtrain.shm``); if that ever fails, the stream goes on in bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np
import torch

from simtrain import batch_wire, shm
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.jobs import DatasetSpec
from simtrain.prepare_request import prepare_request
from simtrain.settings import Settings, get_settings
from trainer_service.job_log import SERVER_ONLY

log = logging.getLogger(__name__)
T = TypeVar("T")

# Codes worth retrying: the server is down, restarting or overloaded. Anything else is final.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
# Codes that say the data cannot serve what the job asks (a split too small for the block, an empty split,
# an unreadable source): the job's data is not fit, and the message says what to change.
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
STREAM_BATCHES = "/simtrain.data.v1.DataService/StreamBatches"
# Batches per message are asked for to fill about this much (int64 x and y), at most MAX of them.
MESSAGE_BYTES = 2 << 20
MAX_BATCHES_PER_MESSAGE = 64


class DataServiceError(RuntimeError):
    """A data service call failed for good; the message is meant for the job's owner."""


class DataRefused(DataServiceError):
    """The data service refused a call for what the data is; ``detail`` is its message, which says why."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """The array as a tensor on the same memory (read-only message bytes: the trainer never writes
    into batches); a big-endian host gets a converted copy, as the wire is little-endian."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        return torch.from_numpy(a)


def batches_per_message(batch_size: int, block_size: int) -> int:
    """How many batches to ask for in one message: about MESSAGE_BYTES of them."""
    return max(1, min(MAX_BATCHES_PER_MESSAGE, MESSAGE_BYTES // (2 * 8 * batch_size * block_size)))


def dataset_stats(info: pb.DatasetInfo) -> dict[str, Any]:
    """The dataset's statistics; {} from a data service whose statistics cannot be read (the checks that
    need them are then skipped)."""
    try:
        stats = json.loads(info.stats_json or "{}")
    except ValueError:
        return {}
    return stats if isinstance(stats, dict) else {}


def check_ids(x: torch.Tensor, y: torch.Tensor, vocab_size: int, step: int) -> None:
    if x.shape != y.shape:
        raise DataServiceError(f"data service sent x of shape {tuple(x.shape)} but y of {tuple(y.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab_size):
        raise DataServiceError(f"batch {step} has input ids outside [0, {vocab_size}): not this dataset's")
    if y.numel() and (int(y.min()) < -1 or int(y.max()) >= vocab_size):
        raise DataServiceError(f"batch {step} has target ids outside [-1, {vocab_size}): not this dataset's")


class DataClient:
    def __init__(
        self,
        address: str,
        retries: int = 5,
        backoff_s: float = 0.2,
        max_message_bytes: int = 64 << 20,
        use_shm: bool | None = None,
    ):
        """``use_shm``: offer the same-host fast path (default: the SIMTRAIN_SHM_BATCHES setting)."""
        self.address = address
        self.use_shm = get_settings().shm_batches if use_shm is None else use_shm
        self.retries = retries
        self.backoff_s = backoff_s
        options = [("grpc.max_receive_message_length", max_message_bytes)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb_grpc.DataServiceStub(self.channel)
        # Batches come as raw bytes (no deserializer): batch_wire views the tensors in place.
        self._stream = self.channel.unary_stream(
            STREAM_BATCHES, request_serializer=pb.StreamBatchesRequest.SerializeToString
        )

    @classmethod
    def configured(cls, address: str, settings: Settings) -> DataClient:
        """A client to ``address`` that retries and sizes messages as ``settings`` say."""
        return cls(
            address,
            retries=settings.data_service_retries,
            backoff_s=settings.data_service_backoff_s,
            max_message_bytes=settings.grpc_max_message_bytes,
        )

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
        # The job's owner reads the data service's own words; the gRPC code is for the trainer's log.
        log.info(
            "%s: the data service at %s answered %s", what, self.address, e.code().name, extra=SERVER_ONLY
        )
        if e.code() in REFUSALS:
            return DataRefused(f"{what}: {e.details()}", e.details())
        return DataServiceError(f"{what}: {e.details()}")

    def prepare(self, spec: DatasetSpec) -> pb.DatasetInfo:
        """Prepare (or find) the dataset a job names, and describe it."""
        if spec.id is not None:
            return self._with_retries(
                "describe dataset", lambda: self.stub.GetDataset(pb.GetDatasetRequest(dataset_id=spec.id))
            )
        assert spec.module is not None and spec.source is not None  # DatasetSpec: an id, or both
        request = prepare_request(spec.module, spec.source, spec.tokenizer, spec.packing, spec.options)
        return self._with_retries("prepare dataset", lambda: self.stub.PrepareDataset(request))

    def tokenizer(self, dataset_id: str) -> dict[str, Any] | None:
        """The dataset's tokenizer as data (``{"kind", "state"}``), for checkpoints; None from a data service
        that does not offer it (GetTokenizer is optional)."""
        request = pb.GetTokenizerRequest(dataset_id=dataset_id)
        definition = self._optional("get tokenizer", lambda: self.stub.GetTokenizer(request))
        if definition is None:
            return None
        try:
            state = json.loads(definition.state_json)
        except ValueError as e:
            raise DataServiceError(
                f"get tokenizer: the data service sent a state that is not JSON: {e}"
            ) from None
        return {"kind": definition.kind, "state": state}

    def retrieve(self, dataset_id: str, prompts: list[str]) -> list[pb.RetrievedContext] | None:
        """The context a retrieval dataset's rows would put before each prompt; None from a data service
        that does not offer Retrieve (it is optional)."""
        request = pb.RetrieveRequest(dataset_id=dataset_id, prompts=prompts)
        response = self._optional("retrieve", lambda: self.stub.Retrieve(request))
        return None if response is None else list(response.contexts)

    def _optional(self, what: str, call: Callable[[], T]) -> T | None:
        """An optional RPC's answer, or None from a data service that answers it UNIMPLEMENTED."""

        def answer() -> T | None:
            try:
                return call()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return None
                raise

        return self._with_retries(what, answer)

    def encode(self, dataset_id: str, text: str) -> list[int]:
        request = pb.EncodeRequest(dataset_id=dataset_id, text=text)
        return list(self._with_retries("encode", lambda: self.stub.Encode(request)).tokens)

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
        per_message: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``num_steps`` batches ``(x, y)`` starting at ``start_step``, reconnecting as needed.

        With ``vocab_size`` (the model's), every batch is checked to hold only ids below it (and -1 in y):
        one bad id would otherwise end a CUDA job with a device-side assert instead of a message.
        ``per_message``: batches to ask for per message (default ``batches_per_message``); a server
        may send fewer, and any count is read.
        """
        per_message = per_message or batches_per_message(batch_size, block_size)
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
                batches_per_message=per_message,
            )
            with shm.probe() if self.use_shm else contextlib.nullcontext() as probe:
                request.shm_probe = probe or ""
                reader = shm.ShmReader() if probe else None
                call = self._stream(request)
                try:
                    for message in call:
                        for x, y in self._split(message, step, end, reader):
                            if vocab_size is not None:
                                check_ids(x, y, vocab_size, step)
                            yield x, y
                            step += 1
                        failures = 0
                except shm.ShmError as e:
                    log.warning("shared-memory batches failed at step %d (%s); streaming bytes", step, e)
                    self.use_shm = False
                    continue
                except grpc.RpcError as e:
                    if e.code() not in RETRYABLE or failures == self.retries:
                        raise self._error(f"stream {split} batches", e) from None
                    delay = self.backoff_s * 2**failures
                    failures += 1
                    log.warning(
                        "batch stream broke at step %d (%s); resuming in %.1fs", step, e.code().name, delay
                    )
                    time.sleep(delay)
                    continue
                finally:
                    call.cancel()  # a no-op once the stream is done; else the server stops now
                    if reader is not None:
                        reader.close()
            if step < end:
                raise DataServiceError(f"data service ended the {split} stream early, at step {step}")

    @staticmethod
    def _split(
        message: bytes, step: int, end: int, reader: shm.ShmReader | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one message, checked to be the steps expected next: views of the message, or
        of one copy out of a shared-memory slot."""
        try:
            batches = batch_wire.decode(message, reader)
        except batch_wire.BatchError as e:
            raise DataServiceError(f"data service sent a malformed batch at step {step}: {e}") from None
        if batches.step != step or batches.step + len(batches) > end:
            raise DataServiceError(
                f"data service sent steps {batches.step}..{batches.step + len(batches) - 1}, "
                f"expected from {step} to at most {end - 1}"
            )
        x, y = as_tensor(batches.x), as_tensor(batches.y)
        return zip(x, y, strict=True)
