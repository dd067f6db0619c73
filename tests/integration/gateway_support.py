"""Shared by the gateway and CLI tests: serve an app on a real port, a fake data service, error checks,
waiting for an experiment."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import uvicorn
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc


@contextmanager
def serve(app: FastAPI, log_level: str = "warning") -> Iterator[httpx.Client]:
    """Run ``app`` under uvicorn on a free port in a thread; yield a client bound to it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of a response, checking the status and the shared error shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return error


def dataset_info(dataset_id: str, source: str = "tiny.txt") -> pb.DatasetInfo:
    return pb.DatasetInfo(
        dataset_id=dataset_id,
        module="text",
        source=source,
        tokenizer="char",
        packing="stream",
        vocab_size=42,
        splits=[
            pb.SplitInfo(name="train", num_tokens=900, num_examples=9),
            pb.SplitInfo(name="val", num_tokens=100),
        ],
        stats_json='{"chars": 1000}',
        warnings=["short source"],
    )


class FakeDataService(pb_grpc.DataServiceServicer):
    """Answers the dataset calls from memory and records what uploads looked like on the wire."""

    def __init__(self) -> None:
        self.datasets = {"ds-1": dataset_info("ds-1")}
        self.uploads: list[dict[str, Any]] = []
        self.upload_started = threading.Event()

    def ListModules(self, request, context):
        option = pb.ModuleOption(name="val_fraction", description="held-out share", default_value="0.1")
        return pb.ListModulesResponse(
            modules=[pb.ModuleInfo(name="text", description="Text", options=[option])]
        )

    def ListDatasets(self, request, context):
        return pb.ListDatasetsResponse(datasets=list(self.datasets.values()))

    def GetDataset(self, request, context):
        if request.dataset_id not in self.datasets:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no dataset {request.dataset_id}")
        return self.datasets[request.dataset_id]

    def PrepareDataset(self, request, context):
        if request.source == "bad.txt":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad.txt is not UTF-8 at byte 3")
        if request.source == "boom.txt":
            context.abort(grpc.StatusCode.INTERNAL, "disk on fire")
        info = dataset_info(f"ds-{request.source}", request.source)
        info.tokenizer = request.tokenizer
        self.datasets[info.dataset_id] = info
        return info

    def UploadSource(self, request_iterator, context):
        self.upload_started.set()
        record: dict[str, Any] = {"filename": None, "chunks": [], "complete": False, "ended": False}
        self.uploads.append(record)
        digest = hashlib.sha256()
        try:
            for chunk in request_iterator:
                if record["filename"] is None:
                    record["filename"] = chunk.filename
                elif chunk.filename:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "only the first chunk may name the file")
                record["chunks"].append(len(chunk.data))
                digest.update(chunk.data)
        finally:
            record["ended"] = True  # normally, or because the client cancelled the call
        if record["filename"] == "refuse.txt":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "refuse.txt: not a name we take")
        record["complete"] = True
        size = sum(record["chunks"])
        return pb.UploadResult(
            source=f"uploads/{record['filename']}", size_bytes=size, sha256=digest.hexdigest()
        )


class GrpcServer:
    """An in-process gRPC server with the health service and, optionally, a DataService servicer."""

    def __init__(self, servicer: pb_grpc.DataServiceServicer | None = None) -> None:
        self.servicer = servicer
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if servicer is not None:
            pb_grpc.add_DataServiceServicer_to_server(servicer, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


def wait_finished(gateway: httpx.Client, experiment_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        record = gateway.get(f"/v1/experiments/{experiment_id}").json()
        if record["status"] == "finished":
            return record
        assert time.monotonic() < deadline, f"experiment not finished: {record['runs']}"
        time.sleep(0.3)
