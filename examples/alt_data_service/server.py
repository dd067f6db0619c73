"""A second, independent data service: the smallest server that honours simtrain's data protocol.

It shares no code with ``data_service``; it only uses the stubs generated from
``proto/simtrain/data/v1/data_service.proto``. It offers one module (``text``: a UTF-8 file under its
data root), one tokenizer (``char``), stream packing, and keeps prepared datasets in memory.

    python examples/alt_data_service/server.py --data-root data --port 50061

Then name it in a job: ``"data_service": "127.0.0.1:50061"``, and check it with
``simtrain conformance 127.0.0.1:50061``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc

SPLITS = ("train", "val")
MAX_UPLOAD_BYTES = 64 << 20
MAX_MESSAGE_BYTES = 64 << 20


class Refused(Exception):
    """A bad request: answered with ``code`` and the message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> Refused:
    return Refused(grpc.StatusCode.NOT_FOUND, message)


def answers(method):
    """Turn ``Refused`` into its status code, and any other failure into INTERNAL with its reason."""

    def fail(context, e: Exception) -> None:
        if isinstance(e, Refused):
            context.abort(e.code, str(e))
        context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self, request, context):
            try:
                yield from method(self, request, context)
            except Exception as e:
                fail(context, e)

        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except Exception as e:
            fail(context, e)

    return unary


@dataclass
class Prepared:
    info: pb.DatasetInfo
    chars: str  # the vocabulary: id i is chars[i]
    splits: dict[str, np.ndarray]


class AltDataService(pb_grpc.DataServiceServicer):
    def __init__(self, data_root: Path) -> None:
        self.root = data_root.resolve()
        self.datasets: dict[str, Prepared] = {}
        self.lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------------

    def _path(self, source: str) -> Path:
        if not source:
            raise invalid("source is empty")
        path = (self.root / source).resolve()
        if Path(source).is_absolute() or not path.is_relative_to(self.root):
            raise invalid(f"source {source!r} is outside the data root")
        if not path.is_file():
            raise not_found(f"source {source!r} not found under {self.root}")
        return path

    def _get(self, dataset_id: str) -> Prepared:
        with self.lock:
            found = self.datasets.get(dataset_id)
        if found is None:
            raise not_found(f"dataset {dataset_id!r} not found: prepare it first")
        return found

    # -- the protocol ------------------------------------------------------------------------

    @answers
    def ListModules(self, request, context):
        option = pb.ModuleOption(
            name="val_fraction", description="Share held out, from the end.", default_value="0.1"
        )
        text = pb.ModuleInfo(name="text", description="One UTF-8 text file (alt service).", options=[option])
        return pb.ListModulesResponse(modules=[text])

    @answers
    def PrepareDataset(self, request, context):
        if request.module != "text":
            raise invalid(f"unknown module {request.module!r}; this service offers: text")
        if request.tokenizer not in ("", "char"):
            raise invalid(f"unknown tokenizer {request.tokenizer!r}; this service offers: char")
        if request.packing not in ("", "stream"):
            raise invalid(f"unknown packing {request.packing!r}; this service offers: stream")
        unknown = set(request.options) - {"val_fraction"}
        if unknown:
            raise invalid(f"unknown option(s) {', '.join(sorted(unknown))}; this service takes: val_fraction")
        try:
            fraction = float(request.options.get("val_fraction", "0.1"))
        except ValueError:
            fraction = -1.0
        if not 0 <= fraction < 1:
            raise invalid(f"val_fraction must be in [0, 1), got {request.options['val_fraction']!r}")
        data = self._path(request.source).read_bytes()
        dataset_id = hashlib.sha256(data + f"|alt|char|stream|{fraction!r}".encode()).hexdigest()[:16]
        with self.lock:
            if dataset_id in self.datasets:
                return self.datasets[dataset_id].info
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise invalid(f"{request.source} is not UTF-8 (byte {e.start})") from None
        if not text:
            raise invalid(f"{request.source} is empty")
        chars = "".join(sorted(set(text)))
        lookup = {c: i for i, c in enumerate(chars)}
        ids = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
        cut = len(ids) - int(len(ids) * fraction)
        splits = {"train": ids[:cut], "val": ids[cut:]}
        info = pb.DatasetInfo(
            dataset_id=dataset_id,
            module="text",
            source=request.source,
            tokenizer="char",
            packing="stream",
            vocab_size=len(chars),
            splits=[pb.SplitInfo(name=s, num_tokens=len(splits[s]), num_examples=1) for s in SPLITS],
            stats_json="{}",
        )
        with self.lock:
            self.datasets[dataset_id] = Prepared(info, chars, splits)
        return info

    @answers
    def GetDataset(self, request, context):
        return self._get(request.dataset_id).info

    @answers
    def ListDatasets(self, request, context):
        with self.lock:
            return pb.ListDatasetsResponse(datasets=[d.info for d in self.datasets.values()])

    @answers
    def UploadSource(self, request_iterator, context):
        name, parts, size = "", [], 0
        for chunk in request_iterator:
            name = name or chunk.filename
            size += len(chunk.data)
            if size > MAX_UPLOAD_BYTES:
                raise invalid(f"upload is over {MAX_UPLOAD_BYTES} bytes")
            parts.append(chunk.data)
        if not name:
            raise invalid("the first chunk must name the file")
        data = b"".join(parts)
        digest = hashlib.sha256(data).hexdigest()
        safe = (
            re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
            or "upload"
        )
        target = self.root / "uploads" / f"{digest[:12]}-{safe}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return pb.UploadResult(source=str(target.relative_to(self.root)), size_bytes=len(data), sha256=digest)

    @answers
    def StreamBatches(self, request, context):
        world = request.world_size or 1
        if request.split not in SPLITS:
            raise invalid(f"split must be train or val, got {request.split!r}")
        if request.batch_size < 1 or request.block_size < 1:
            raise invalid("batch_size and block_size must be positive")
        if not 0 <= request.rank < world:
            raise invalid(f"rank {request.rank} is not in [0, {world})")
        if request.start_step < 0 or request.num_steps < 0:
            raise invalid("start_step and num_steps must not be negative")
        if 2 * request.batch_size * request.block_size * 8 > MAX_MESSAGE_BYTES - 1024:
            raise invalid("batch_size * block_size is too large for one message")
        dataset = self._get(request.dataset_id)
        tokens = dataset.splits[request.split]
        block, batch = request.block_size, request.batch_size
        if len(tokens) <= block:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the {request.split} split has {len(tokens)} tokens, too few for block_size {block}",
            )
        step = request.start_step
        while (
            request.num_steps == 0 or step < request.start_step + request.num_steps
        ) and context.is_active():
            # One draw per (seed, split, step) for all ranks; each rank takes its own slice of it.
            rng = np.random.Generator(
                np.random.PCG64([request.seed & (2**64 - 1), SPLITS.index(request.split), step])
            )
            starts = rng.integers(0, len(tokens) - block, size=world * batch)[request.rank * batch :][:batch]
            rows = tokens[starts[:, None] + np.arange(block + 1)]
            x, y = rows[:, :-1], rows[:, 1:]
            yield pb.Batch(
                step=step,
                x=pb.Tensor(dtype="int64", shape=[batch, block], data=x.astype("<i8").tobytes()),
                y=pb.Tensor(dtype="int64", shape=[batch, block], data=y.astype("<i8").tobytes()),
                vocab_size=dataset.info.vocab_size,
            )
            step += 1

    @answers
    def Encode(self, request, context):
        dataset = self._get(request.dataset_id)
        lookup = {c: i for i, c in enumerate(dataset.chars)}
        missing = [c for c in request.text if c not in lookup]
        if missing:
            raise invalid(f"character {missing[0]!r} is not in the vocabulary")
        return pb.EncodeResponse(tokens=[lookup[c] for c in request.text])

    @answers
    def Decode(self, request, context):
        dataset = self._get(request.dataset_id)
        bad = [t for t in request.tokens if not 0 <= t < len(dataset.chars)]
        if bad:
            raise invalid(f"token id {bad[0]} is outside [0, {len(dataset.chars)})")
        return pb.DecodeResponse(text="".join(dataset.chars[t] for t in request.tokens))


def serve(data_root: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[grpc.Server, int]:
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0)]
    server = grpc.server(ThreadPoolExecutor(max_workers=32), options=options)
    pb_grpc.add_DataServiceServicer_to_server(AltDataService(data_root), server)
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50061)
    args = parser.parse_args()
    server, port = serve(args.data_root, args.host, args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"alt_data_service listening on {args.host}:{port}", flush=True)
    stop.wait()
    server.stop(2).wait()


if __name__ == "__main__":
    main()
