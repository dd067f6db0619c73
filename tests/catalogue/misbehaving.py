"""A data service that serves our real data service's datasets but corrupts every batch it streams.

Broken batches (targets not shifted, every target masked, ids past the vocabulary) cannot come from a data
module: a module only yields documents and pairs, and our service packs them correctly by construction.
They come from other data services, which any job may name (``data_service``), and that is the case the
trainer's per-batch checks exist for. So the catalogue reproduces them the way they arise: a server that
speaks the same protocol and gets the packing wrong. It is our servicer with ``StreamBatches`` rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from data_service.server import DataServiceServicer, add_servicer
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.settings import Settings

Corruption = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def unshifted(x: np.ndarray, y: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """y is x itself: each target is the input at its own position (a label leak)."""
    return x, np.where(y == -1, -1, x)


def all_masked(x: np.ndarray, y: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every target -1: no position takes loss."""
    return x, np.full_like(y, -1)


def ids_past_vocab(x: np.ndarray, y: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every seventh input id moved past the vocabulary, as a service with another tokenizer would send."""
    x = x.copy()
    x.flat[::7] += vocab_size
    return x, y


def padding_in_targets(x: np.ndarray, y: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs rows padded with their end token in y as well as in x, as a packer that masks only the
    prompt makes them: loss is taken on the padding."""
    shape, T = y.shape, y.shape[-1]
    x, y = x.reshape(-1, T).copy(), y.reshape(-1, T).copy()
    last = np.where(y != -1, np.arange(T), -1).max(axis=1)
    for row in np.flatnonzero((last >= 0) & (last < T - 1)):
        end = y[row, last[row]]
        y[row, last[row] + 1 :] = end
        x[row, last[row] + 1 :] = end  # still aligned: x[t + 1] == y[t]
    return x.reshape(shape), y.reshape(shape)


CORRUPTIONS: dict[str, Corruption] = {
    "unshifted": unshifted,
    "all_masked": all_masked,
    "ids_past_vocab": ids_past_vocab,
    "padding_in_targets": padding_in_targets,
}


def _array(t: pb.Tensor) -> np.ndarray:
    return np.frombuffer(t.data, dtype=np.dtype(t.dtype).newbyteorder("<")).reshape(tuple(t.shape))


def _tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<i8")
    return pb.Tensor(dtype="int64", shape=list(a.shape), data=a.tobytes())


class MisbehavingServicer(DataServiceServicer):
    def __init__(self, settings: Settings, corrupt: Corruption) -> None:
        super().__init__(settings)
        self.corrupt = corrupt

    def StreamBatches(
        self, request: pb.StreamBatchesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Batch]:
        # It rewrites bytes, so it offers no /dev/shm fast path: the stream it wraps must carry them.
        in_bytes = pb.StreamBatchesRequest()
        in_bytes.CopyFrom(request)
        in_bytes.shm_probe = ""
        for message in super().StreamBatches(in_bytes, context):
            batch = pb.Batch.FromString(
                message if isinstance(message, bytes) else message.SerializeToString()
            )
            x, y = self.corrupt(_array(batch.x), _array(batch.y), batch.vocab_size)
            yield pb.Batch(
                step=batch.step,
                x=_tensor(x),
                y=_tensor(y),
                vocab_size=batch.vocab_size,
                num_batches=batch.num_batches,
            )


class TrainAsValServicer(DataServiceServicer):
    """A service written from the .proto alone that gets the split wrong: it streams train when asked
    for val, and describes its datasets with no statistics (``stats_json`` is optional)."""

    def StreamBatches(
        self, request: pb.StreamBatchesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Batch]:
        if request.split == "val":
            as_train = pb.StreamBatchesRequest()
            as_train.CopyFrom(request)
            as_train.split = "train"
            request = as_train
        return super().StreamBatches(request, context)

    def PrepareDataset(
        self, request: pb.PrepareDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DatasetInfo:
        return _without_stats(super().PrepareDataset(request, context))

    def GetDataset(self, request: pb.GetDatasetRequest, context: grpc.ServicerContext) -> pb.DatasetInfo:
        return _without_stats(super().GetDataset(request, context))


def _without_stats(info: pb.DatasetInfo) -> pb.DatasetInfo:
    info.stats_json = ""
    del info.warnings[:]
    return info


def serve_misbehaving(settings: Settings, corruption: str) -> tuple[grpc.Server, str]:
    """Start the misbehaving service on a free loopback port; return it and its address."""
    server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="misbehaving"))
    if corruption == "train_as_val":
        servicer: DataServiceServicer = TrainAsValServicer(settings)
    else:
        servicer = MisbehavingServicer(settings, CORRUPTIONS[corruption])
    add_servicer(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
