"""The DataService gRPC servicer, and ``serve`` to run it with health checking and reflection."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from data_service import modules, tokenizers
from data_service.errors import DataError, NotFoundError, PreconditionError, without_server_paths
from data_service.modules.base import DataModule
from data_service.options import all_options
from data_service.rows import get_rows
from data_service.sampling import EpochOrder, get_windows, ignore_untrained, pair_batch
from data_service.shm import ShmWriter
from data_service.store import SPLITS, Dataset, Store, check_request
from data_service.upload import list_sources, max_upload_bytes, store_upload
from data_service.wire import encode_batch
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.settings import Settings

SERVICE = pb.DESCRIPTOR.services_by_name["DataService"]
SERVICE_NAME = SERVICE.full_name
# Each open stream holds a worker thread, so allow many trainers at once.
MAX_WORKERS = 64
# A step draws world_size * batch_size windows; past this a request could exhaust the server's memory.
MAX_WINDOWS_PER_STEP = 2**24
# Room for the Batch message's own fields around the two tensors.
MESSAGE_OVERHEAD_BYTES = 1024
# A stream maps its split afresh this often (in batches), letting go of the pages it touched. Each
# window touched maps up to 64 KiB around it (the kernel's fault-around), so a batch of 64 maps ~4 MiB.
REMAP_STEPS = 16
# A split this small stays mapped: its pages bound the RSS as tightly as remapping does, and mapping it
# afresh would only fault the same pages in again (about half the cost of making a batch).
REMAP_MIN_BYTES = 64 << 20
# A client may ask for several batches per message (fewer, larger messages stream faster); at most this.
MAX_BATCHES_PER_MESSAGE = 256
MAX_RETRIEVE_PROMPTS = 256

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _status(context: grpc.ServicerContext, method: str, roots: tuple[Path, ...]) -> Iterator[None]:
    """Turn exceptions into status codes: the client's mistakes keep their message, the rest is INTERNAL.

    Either way the message leaves without the server's folders in it (see ``without_server_paths``).
    """
    try:
        yield
    except NotFoundError as e:
        context.abort(grpc.StatusCode.NOT_FOUND, without_server_paths(str(e), roots))
    except PreconditionError as e:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, without_server_paths(str(e), roots))
    except DataError as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, without_server_paths(str(e), roots))
    except Exception as e:
        if not context.is_active():  # the client went away (e.g. cancelled an upload mid-stream)
            return
        log.exception("%s failed", method)
        reason = without_server_paths(f"{type(e).__name__}: {e}", roots)
        context.abort(grpc.StatusCode.INTERNAL, f"the data service failed ({reason}); its log says more")


@dataclass(frozen=True)
class _Malformed:
    """Request bytes that do not parse as the method's message type (kept, to be refused with a reason)."""

    type_name: str
    reason: str


def _lenient(message_type: Any) -> Callable[[bytes], Any]:
    """A request deserializer that never raises: grpc would answer a parse failure with INTERNAL."""

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as e:
            return _Malformed(message_type.DESCRIPTOR.full_name, str(e))

    return parse


def _well_formed(request: Any) -> Any:
    """The request, or (for a client stream) its messages, refusing malformed ones as INVALID_ARGUMENT."""
    if isinstance(request, _Malformed):
        raise DataError(f"the request is not a valid {request.type_name} message: {request.reason}")
    if isinstance(request, Iterator):
        return (_well_formed(message) for message in request)
    return request


def _rpc(method: Callable) -> Callable:
    """Give an RPC method (unary or streaming) real status codes instead of UNKNOWN."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self, request, context):
            with _status(context, method.__name__, self.server_roots):
                yield from method(self, _well_formed(request), context)

        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        with _status(context, method.__name__, self.server_roots):
            return method(self, _well_formed(request), context)

    return unary


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
    if request.batches_per_message < 0:
        raise DataError(f"batches_per_message must not be negative, got {request.batches_per_message}")


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays on a new first axis: a lone one as a view of itself, where np.stack would copy it."""
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)


class _Batches:
    """(step, n) → the serialised Batch of n steps for one StreamBatches request, after checking the
    split can serve it.

    A split over REMAP_MIN_BYTES is mapped afresh every REMAP_STEPS batches: pages a long stream
    touched then leave the process, so its RSS stays bounded however big the dataset is.
    """

    def __init__(self, ds: Dataset, request: pb.StreamBatchesRequest, world_size: int) -> None:
        self.ds, self.request, self.world_size = ds, request, world_size
        self.pairs = ds.packing == "pairs"
        self.made = 0
        self._map()
        split, block = request.split, request.block_size
        # Datasets prepared before the stats said why_empty get the general advice.
        why = (
            ds.meta["stats"]
            .get("why_empty", {})
            .get(split, "prepare it with more data or another val_fraction")
        )
        if self.pairs:
            if not len(self.rows):
                raise PreconditionError(f"the {split} split of dataset {ds.id} has no examples: {why}")
            if ds.meta["options"]["overlong"] == "reject":
                long = self.rows[:, 2] > block + 1
                if long.any():
                    raise PreconditionError(
                        f"{int(long.sum())} examples of the {split} split of dataset {ds.id} are longer "
                        f"than block_size {block} + 1 (the longest has {int(self.rows[:, 2].max())} tokens) "
                        "and option overlong is 'reject': use a larger block_size or overlong 'truncate'"
                    )
            self.order = EpochOrder(len(self.rows), request.seed, split)
        elif len(self.tokens) == 0:
            raise PreconditionError(f"the {split} split of dataset {ds.id} is empty: {why}")
        elif len(self.tokens) <= block:
            raise DataError(
                f"block_size {block} is too large for the {split} split of dataset {ds.id}, "
                f"which has {len(self.tokens)} tokens: a window needs block_size + 1, so use "
                f"block_size {len(self.tokens) - 1} or less, or prepare more data"
            )

    def _map(self) -> None:
        self.tokens = self.ds.tokens(self.request.split)
        self.rows = self.ds.rows(self.request.split) if self.pairs else None
        self.mask = self.ds.mask(self.request.split)
        mapped = self.tokens.nbytes + (self.rows.nbytes if self.pairs else 0)
        mapped += self.mask.nbytes if self.mask is not None else 0
        self.remap = mapped > REMAP_MIN_BYTES

    def __call__(self, step: int, n: int = 1) -> bytes:
        """The serialised Batch of steps ``step`` .. ``step + n - 1`` (a plain one-step Batch for n = 1)."""
        x, y = self.arrays(step, n)
        return encode_batch(step, x[0] if n == 1 else x, y[0] if n == 1 else y, self.ds.meta["vocab_size"])

    def arrays(self, step: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """x and y [n, batch, block] of steps ``step`` .. ``step + n - 1``, in the split's dtype (maybe
        strided views: the one pass that widens them to int64 also packs them)."""
        self.made += n
        if self.remap and self.made >= REMAP_STEPS:
            self.made = 0
            self._map()
        steps = range(step, step + n)
        if self.pairs:
            xs, ys = zip(*(self._pair(s) for s in steps), strict=True)
            return _stack(xs), _stack(ys)
        windows = _stack([self._windows(self.tokens, s) for s in steps])
        if self.mask is not None:
            trained = _stack([self._windows(self.mask, s) for s in steps])
            return windows[..., :-1], ignore_untrained(windows[..., 1:], trained[..., 1:])
        return windows[..., :-1], windows[..., 1:]

    def _windows(self, tokens: np.ndarray, step: int) -> np.ndarray:
        """Windows of ``tokens`` (or of the mask: the same draw lines the two up) at ``step``."""
        r = self.request
        return get_windows(
            tokens,
            block_size=r.block_size,
            batch_size=r.batch_size,
            seed=r.seed,
            split=r.split,
            step=step,
            rank=r.rank,
            world_size=self.world_size,
        )

    def _pair(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.request
        return pair_batch(
            self.tokens,
            self.rows,
            self.order,
            block_size=r.block_size,
            batch_size=r.batch_size,
            step=step,
            pad=self.ds.meta["end_token"],
            rank=r.rank,
            world_size=self.world_size,
            mask=self.mask,
        )


class DataServiceServicer:
    def __init__(self, settings: Settings, upload_limit_bytes: int | None = None) -> None:
        self.settings = settings
        self.store = Store(settings.prepared_dir)
        # Folders of this server that its messages never show a client.
        self.server_roots = (Path(settings.data_root), Path(settings.state_dir))
        self.modules = modules.discover()
        self.upload_limit_bytes = max_upload_bytes() if upload_limit_bytes is None else upload_limit_bytes
        # Batches made so far, over all streams (a stream makes one only when the client can take it).
        self.batches_made = 0
        self._count_lock = threading.Lock()

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
                        for o in all_options(m)
                    ],
                    source_is_label=not m.needs_source,
                )
                for _, m in sorted(self.modules.items())
            ]
        )

    def _module(self, name: str) -> DataModule:
        module = self.modules.get(name)
        if module is None:
            raise DataError(f"unknown module {name!r}; offered: {', '.join(sorted(self.modules))}", "module")
        return module

    def _prepare_args(self, request: pb.PrepareDatasetRequest) -> tuple[Any, ...]:
        """A PrepareDatasetRequest as the arguments of Store.prepare and check_request, defaults filled in."""
        return (
            self._module(request.module),
            self.settings.data_root,
            request.source,
            request.tokenizer or "char",
            request.packing or "stream",
            dict(request.options),
        )

    @_rpc
    def PrepareDataset(self, request, context):
        return _info(self.store.prepare(*self._prepare_args(request)))

    @_rpc
    def GetDataset(self, request, context):
        return _info(self._dataset(request.dataset_id))

    @_rpc
    def ListDatasets(self, request, context):
        return pb.ListDatasetsResponse(datasets=[_info(ds) for ds in self.store.list()])

    @_rpc
    def UploadSource(self, request_iterator, context):
        stored = store_upload(request_iterator, Path(self.settings.data_root), self.upload_limit_bytes)
        return pb.UploadResult(source=stored.source, size_bytes=stored.size_bytes, sha256=stored.sha256)

    @_rpc
    def ListSources(self, request, context):
        sources = []
        for found in list_sources(Path(self.settings.data_root)):
            source = pb.SourceFile(name=found.name, size_bytes=found.size_bytes)
            source.uploaded_at.FromNanoseconds(found.mtime_ns)
            sources.append(source)
        return pb.ListSourcesResponse(sources=sources)

    @_rpc
    def StreamBatches(self, request, context):
        world_size = request.world_size or 1
        _check_stream(request, world_size)
        ds = self._dataset(request.dataset_id)
        batch_fn = _Batches(ds, request, world_size)
        size = 2 * request.batch_size * request.block_size * 8 + MESSAGE_OVERHEAD_BYTES
        if size > self.settings.grpc_max_message_bytes:
            raise DataError(
                f"a batch of {request.batch_size} x {request.block_size} int64 tokens (x and y) is about "
                f"{size} bytes, over the message limit of {self.settings.grpc_max_message_bytes}; "
                "lower batch_size or block_size"
            )
        per_message = min(
            max(request.batches_per_message, 1),
            MAX_BATCHES_PER_MESSAGE,
            self.settings.grpc_max_message_bytes // size,
        )
        if request.num_steps:  # a short stream's slots need only hold its steps
            per_message = min(per_message, request.num_steps)
        step = request.start_step
        end = step + request.num_steps if request.num_steps else None
        shm = ShmWriter.for_probe(
            request.shm_probe, per_message * 2 * request.batch_size * request.block_size * 8
        )
        if shm is not None:
            context.add_callback(shm.close)  # however the stream ends, even while this thread writes
        try:
            # gRPC asks for the next message only once the last one is on its way, so a slow client
            # holds this loop back (backpressure) instead of letting batches pile up in memory; on the
            # fast path the writer also waits for the client to free a slot.
            while (end is None or step < end) and context.is_active():
                n = per_message if end is None else min(per_message, end - step)
                message = None
                if shm is not None:
                    try:
                        if (message := self._shm_batch(batch_fn, shm, step, n, context)) is None:
                            return
                    except OSError as e:  # e.g. /dev/shm is full: the stream goes on in bytes
                        log.warning("shared-memory batches failed (%s); streaming bytes", e)
                        shm.drain(context.is_active)  # the slots already sent are still to be read
                        shm.close()
                        shm = None
                if message is None:
                    message = batch_fn(step, n)
                with self._count_lock:
                    self.batches_made += n
                yield message
                step += n
            if shm is not None:
                shm.drain(context.is_active)
        finally:
            if shm is not None:
                shm.close()

    @staticmethod
    def _shm_batch(
        batch_fn: _Batches, shm: ShmWriter, step: int, n: int, context: grpc.ServicerContext
    ) -> pb.Batch | None:
        """The Batch of n steps with its tensors in a /dev/shm slot; None if the stream ended meanwhile."""
        x, y = batch_fn.arrays(step, n)
        name = shm.write(x, y, context.is_active)
        if name is None:
            return None
        shape = x.shape if n > 1 else x.shape[1:]
        return pb.Batch(
            step=step,
            x=pb.Tensor(dtype="int64", shape=shape),
            y=pb.Tensor(dtype="int64", shape=shape),
            vocab_size=batch_fn.ds.meta["vocab_size"],
            num_batches=n if n > 1 else 0,
            shm_file=name,
        )

    @_rpc
    def CheckDataset(self, request, context):
        try:
            check_request(*self._prepare_args(request))
        except DataError as e:
            message = without_server_paths(str(e), self.server_roots)
            return pb.CheckDatasetResponse(problems=[pb.DatasetProblem(field=e.field or "", message=message)])
        return pb.CheckDatasetResponse()

    @_rpc
    def Encode(self, request, context):
        tokens = self._dataset(request.dataset_id).tokenizer().encode(request.text)
        return pb.EncodeResponse(tokens=tokens.tolist())

    @_rpc
    def Decode(self, request, context):
        return pb.DecodeResponse(text=self._dataset(request.dataset_id).tokenizer().decode(request.tokens))

    @_rpc
    def GetTokenizer(self, request, context):
        saved = tokenizers.save(self._dataset(request.dataset_id).tokenizer())
        return pb.TokenizerDefinition(kind=saved["kind"], state_json=json.dumps(saved["state"]))

    @_rpc
    def GetRows(self, request, context):
        return get_rows(self._dataset(request.dataset_id), request)

    @_rpc
    def Retrieve(self, request, context):
        if not 1 <= len(request.prompts) <= MAX_RETRIEVE_PROMPTS:
            raise DataError(
                f"prompts: give 1 to {MAX_RETRIEVE_PROMPTS}, got {len(request.prompts)}", "prompts"
            )
        ds = self._dataset(request.dataset_id)
        retriever = ds.retriever()
        tok = ds.tokenizer()
        return pb.RetrieveResponse(
            contexts=[
                pb.RetrievedContext(
                    tokens=retriever.head(found).tolist(),
                    text=tok.decode(found.kept),
                    passages=len(found.hits),
                )
                for found in retriever.find(list(request.prompts))
            ]
        )


def _serialize(message: Any) -> bytes:
    """Messages are serialised as usual; bytes (a Batch encoded by ``wire``) pass through as they are."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_servicer(servicer: DataServiceServicer, server: grpc.Server) -> None:
    """Register every DataService method from the proto's descriptor, with ``_serialize`` for responses."""
    handlers = {}
    for method in SERVICE.methods:
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=_lenient(getattr(pb, method.input_type.name)),
            response_serializer=_serialize,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def serve(
    settings: Settings, port: int | None = None, upload_limit_bytes: int | None = None
) -> tuple[grpc.Server, int]:
    """Start the data service on ``settings.data_service_host`` and return it with the bound port.

    ``port`` overrides ``settings.data_service_port``; 0 picks a free one.
    """
    server, port, _ = serve_with_servicer(settings, port, upload_limit_bytes)
    return server, port


def serve_with_servicer(
    settings: Settings, port: int | None = None, upload_limit_bytes: int | None = None
) -> tuple[grpc.Server, int, DataServiceServicer]:
    """``serve``, also handing back the servicer (tests and benchmarks read its counters)."""
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
    servicer = DataServiceServicer(settings, upload_limit_bytes)
    add_servicer(servicer, server)
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{settings.data_service_host}:{settings.data_service_port if port is None else port}"
    bound = server.add_insecure_port(address)
    server.start()
    return server, bound, servicer
