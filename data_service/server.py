"""The DataService gRPC servicer, and ``serve`` to run it with health checking and reflection."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from data_service import modules
from data_service.errors import DataError, NotFoundError
from data_service.sampling import get_batch
from data_service.store import OPTIONS, SPLITS, Dataset, Store
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.settings import Settings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DataService"].full_name
# Each open stream holds a worker thread, so allow many trainers at once.
MAX_WORKERS = 64
# A step draws world_size * batch_size windows; past this a request could exhaust the server's memory.
MAX_WINDOWS_PER_STEP = 2**24
# Room for the Batch message's own fields around the two tensors.
MESSAGE_OVERHEAD_BYTES = 1024

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _status(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Turn exceptions into status codes: the client's mistakes keep their message, the rest is INTERNAL."""
    try:
        yield
    except NotFoundError as e:
        context.abort(grpc.StatusCode.NOT_FOUND, str(e))
    except DataError as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    except Exception as e:
        log.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, f"{method} failed: {type(e).__name__}: {e}")


def _rpc(method: Callable) -> Callable:
    """Give an RPC method (unary or streaming) real status codes instead of UNKNOWN."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self, request, context):
            with _status(context, method.__name__):
                yield from method(self, request, context)

        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        with _status(context, method.__name__):
            return method(self, request, context)

    return unary


def _tensor(a: np.ndarray) -> pb.Tensor:
    return pb.Tensor(dtype="int64", shape=list(a.shape), data=a.astype("<i8").tobytes())


def _info(ds: Dataset) -> pb.DatasetInfo:
    m = ds.meta
    return pb.DatasetInfo(
        dataset_id=m["id"],
        module=m["module"],
        source=m["source"],
        tokenizer=m["tokenizer"]["kind"],
        packing=m["packing"],
        vocab_size=m["vocab_size"],
        splits=[pb.SplitInfo(name=s, **m["splits"][s]) for s in SPLITS],
        stats_json=json.dumps(m["stats"]),
        warnings=m["warnings"],
    )


def _check_stream(request: pb.StreamBatchesRequest, world_size: int) -> None:
    """Refuse a StreamBatches request that is wrong on its face, before touching any data."""
    if request.split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {request.split!r}")
    if request.batch_size <= 0 or request.block_size <= 0:
        raise DataError(
            f"batch_size and block_size must be positive, got {request.batch_size} and {request.block_size}"
        )
    if world_size < 0 or not 0 <= request.rank < world_size:
        raise DataError(f"rank must be in [0, world_size), got rank {request.rank} of {world_size}")
    if world_size * request.batch_size > MAX_WINDOWS_PER_STEP:
        raise DataError(f"world_size * batch_size must be at most {MAX_WINDOWS_PER_STEP}")
    if request.start_step < 0 or request.num_steps < 0:
        raise DataError(
            f"start_step and num_steps must not be negative, got {request.start_step} and {request.num_steps}"
        )


class DataServiceServicer(pb_grpc.DataServiceServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.prepared_dir)
        self.modules = modules.discover()

    def _dataset(self, dataset_id: str) -> Dataset:
        if not dataset_id:
            raise DataError("dataset_id is empty")
        return self.store.get(dataset_id)

    @_rpc
    def ListModules(self, request, context):
        return pb.ListModulesResponse(
            modules=[
                pb.ModuleInfo(
                    name=m.name,
                    description=m.description,
                    options=[
                        pb.ModuleOption(name=o.name, description=o.description, default_value=o.default)
                        for o in (*OPTIONS, *m.options)
                    ],
                )
                for _, m in sorted(self.modules.items())
            ]
        )

    @_rpc
    def PrepareDataset(self, request, context):
        module = self.modules.get(request.module)
        if module is None:
            raise DataError(f"unknown module {request.module!r}; offered: {', '.join(sorted(self.modules))}")
        ds = self.store.prepare(
            module,
            self.settings.data_root,
            request.source,
            tokenizer=request.tokenizer or "char",
            packing=request.packing or "stream",
            options=dict(request.options),
        )
        return _info(ds)

    @_rpc
    def GetDataset(self, request, context):
        return _info(self._dataset(request.dataset_id))

    @_rpc
    def StreamBatches(self, request, context):
        world_size = request.world_size or 1
        _check_stream(request, world_size)
        ds = self._dataset(request.dataset_id)
        tokens = ds.tokens(request.split)
        block, batch = request.block_size, request.batch_size
        if len(tokens) <= block:
            raise DataError(
                f"block_size {block} is too large for the {request.split} split of dataset {ds.id}, "
                f"which has {len(tokens)} tokens: a window needs block_size + 1"
            )
        size = 2 * batch * block * 8 + MESSAGE_OVERHEAD_BYTES
        if size > self.settings.grpc_max_message_bytes:
            raise DataError(
                f"a batch of {batch} x {block} int64 tokens (x and y) is about {size} bytes, over the "
                f"message limit of {self.settings.grpc_max_message_bytes}; lower batch_size or block_size"
            )
        step = request.start_step
        end = step + request.num_steps if request.num_steps else None
        while (end is None or step < end) and context.is_active():
            x, y = get_batch(
                tokens,
                block_size=block,
                batch_size=batch,
                seed=request.seed,
                split=request.split,
                step=step,
                rank=request.rank,
                world_size=world_size,
            )
            yield pb.Batch(step=step, x=_tensor(x), y=_tensor(y), vocab_size=ds.meta["vocab_size"])
            step += 1

    @_rpc
    def Encode(self, request, context):
        tokens = self._dataset(request.dataset_id).tokenizer().encode(request.text)
        return pb.EncodeResponse(tokens=tokens.tolist())

    @_rpc
    def Decode(self, request, context):
        return pb.DecodeResponse(text=self._dataset(request.dataset_id).tokenizer().decode(request.tokens))


def serve(settings: Settings, port: int | None = None) -> tuple[grpc.Server, int]:
    """Start the data service on ``settings.data_service_host`` and return it with the bound port.

    ``port`` overrides ``settings.data_service_port``; 0 picks a free one.
    """
    limit = settings.grpc_max_message_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="data_service"),
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            # Two servers silently sharing a port would split the clients between them.
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_DataServiceServicer_to_server(DataServiceServicer(settings), server)
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{settings.data_service_host}:{settings.data_service_port if port is None else port}"
    bound = server.add_insecure_port(address)
    server.start()
    return server, bound
