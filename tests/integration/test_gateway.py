"""The gateway over real HTTP, against a real Redis and a real gRPC health server."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.app import create_app
from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_GRPC = "127.0.0.1:1"

SPEC: dict[str, Any] = {
    "dataset": {"module": "text", "source": "tiny.txt", "tokenizer": "char"},
    "model": {"model_type": "gpt-nano"},
    "training": {"max_iters": 50, "batch_size": 4, "block_size": 16},
}


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """Run ``app`` under uvicorn on a free port in a thread; yield a client bound to it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
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


class HealthServer:
    """A gRPC server that only serves the standard health service: a stand-in data service."""

    def __init__(self) -> None:
        self.servicer = health.HealthServicer()
        self.servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


@pytest.fixture
def data_service() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_url: str, key_prefix: str, data_service: HealthServer) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=key_prefix, data_service_addr=data_service.address)


@pytest.fixture
def client(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    # Depends on job_queue so the test's keys are deleted afterwards.
    with serve(create_app(settings)) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of a response, checking the status and the shared error shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return error


def submit(client: httpx.Client, spec: dict[str, Any] = SPEC) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


# -- jobs -------------------------------------------------------------------------------------------


def test_submit_queues_job_on_redis(client: httpx.Client, job_queue: JobQueue) -> None:
    response = client.post("/v1/jobs", json=SPEC)
    assert response.status_code == 202
    body = response.json()
    assert body == {"id": body["id"], "status": "queued"}
    assert response.headers["location"] == f"/v1/jobs/{body['id']}"

    entries = job_queue.r.xrange(job_queue.stream)
    assert [fields for _, fields in entries] == [{"id": body["id"]}]
    record = job_queue.get(body["id"])
    assert record is not None
    assert record.status is JobStatus.queued
    assert record.spec == JobSpec.model_validate(SPEC)


def test_get_job_returns_record(client: httpx.Client) -> None:
    job_id = submit(client)
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200
    job = response.json()
    assert job["id"] == job_id
    assert job["status"] == "queued"
    assert job["progress"] == {"step": 0, "max_iters": 50}
    assert job["metrics"] == {}
    assert job["error"] is None
    assert job["attempts"] == 0
    assert job["worker"] is None
    assert job["spec"]["training"]["max_iters"] == 50
    assert job["spec"]["dataset"]["source"] == "tiny.txt"
    assert job["created_at"] > 0 and job["started_at"] is None and job["finished_at"] is None
    assert "dataset_id" in job


def test_get_job_after_worker_progress(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)
    job_queue.update(job_id, status=JobStatus.running, worker="w1", started_at=time.time())
    job_queue.add_metrics(job_id, {"step": 10, "train_loss": 2.5})
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "running"
    assert job["worker"] == "w1"
    assert job["progress"] == {"step": 10, "max_iters": 50}
    assert job["metrics"] == {"step": 10, "train_loss": 2.5}


def test_unknown_job_is_404(client: httpx.Client) -> None:
    missing = "0" * 32
    for path in (f"/v1/jobs/{missing}", f"/v1/jobs/{missing}/metrics", f"/v1/jobs/{missing}/report"):
        error = error_of(client.get(path), 404)
        assert error["code"] == "not_found"
        assert missing in error["message"]


@pytest.mark.parametrize("junk", ["not-hex", "ABCDEF", "a" * 65, "*", "x%00y", "..%2f..%2fetc"])
def test_junk_job_id_is_404(client: httpx.Client, junk: str) -> None:
    assert error_of(client.get(f"/v1/jobs/{junk}"), 404)["code"] == "not_found"
    error_of(client.get(f"/v1/jobs/{junk}/metrics"), 404)
    error_of(client.get(f"/v1/jobs/{junk}/report"), 404)


# -- validation -------------------------------------------------------------------------------------


def with_changes(**changes: Any) -> dict[str, Any]:
    spec = {key: dict(value) for key, value in SPEC.items()}
    for key, value in changes.items():
        if value is None:
            del spec[key]
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (with_changes(training={"max_iters": 0}), "training.max_iters", "greater than or equal to 1"),
        (with_changes(training={"batch_size": "many"}), "training.batch_size", "integer"),
        (with_changes(colour="blue"), "colour", "extra"),
        (with_changes(training={"max_iter": 5}), "training.max_iter", "extra"),
        (with_changes(dataset=None), "dataset", "required"),
        (with_changes(dataset={"module": "text"}), "dataset", "'module' and 'source'"),
        (with_changes(model={"model_type": "gpt-nano", "n_layer": 2}), "model", "not both"),
        (with_changes(model={"model_type": "gpt-huge"}), "model.model_type", "gpt-nano"),
        (with_changes(data_service="no port"), "data_service", "pattern"),
    ],
)
def test_invalid_spec_is_422_naming_the_field(
    client: httpx.Client, job_queue: JobQueue, spec: dict[str, Any], field: str, words: str
) -> None:
    error = error_of(client.post("/v1/jobs", json=spec), 422)
    assert error["code"] == "validation_error"
    assert field in error["message"]
    named = {d["field"]: d for d in error["details"]}
    assert field in named, error["details"]
    assert named[field]["in"] == "body"
    assert words.lower() in named[field]["message"].lower()
    assert job_queue.r.exists(job_queue.stream) == 0


def test_several_invalid_fields_are_all_named(client: httpx.Client) -> None:
    spec = with_changes(training={"max_iters": 0, "learning_rate": -1}, extra=1)
    error = error_of(client.post("/v1/jobs", json=spec), 422)
    fields = {d["field"] for d in error["details"]}
    assert fields == {"training.max_iters", "training.learning_rate", "extra"}
    assert all(f in error["message"] for f in fields)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"dataset": ', "application/json"),
        (b"{'dataset': {}}", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b"dataset=x", "application/x-www-form-urlencoded"),
        (b"hello", "text/plain"),
    ],
)
def test_malformed_body_is_422(client: httpx.Client, content: bytes, content_type: str) -> None:
    response = client.post("/v1/jobs", content=content, headers={"content-type": content_type})
    error = error_of(response, 422)
    assert error["code"] == "validation_error"
    assert error["details"]


def test_bad_query_is_422(client: httpx.Client) -> None:
    job_id = submit(client)
    error = error_of(client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": "soon"}), 422)
    assert error["details"][0]["field"] == "since_step"
    assert error["details"][0]["in"] == "query"
    error_of(client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": -1}), 422)


# -- metrics and report -----------------------------------------------------------------------------


def test_metrics_in_step_order_and_since_step(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)
    assert client.get(f"/v1/jobs/{job_id}/metrics").json() == {"job_id": job_id, "metrics": []}
    for step in (0, 10, 20):
        job_queue.add_metrics(job_id, {"step": step, "train_loss": 4.0 - step / 10, "lr": 5e-4})

    body = client.get(f"/v1/jobs/{job_id}/metrics").json()
    assert body["job_id"] == job_id
    assert [row["step"] for row in body["metrics"]] == [0, 10, 20]
    assert body["metrics"][2] == {"step": 20, "train_loss": 2.0, "lr": 5e-4}

    later = client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": 10}).json()
    assert [row["step"] for row in later["metrics"]] == [10, 20]


def test_report_404_until_stored(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)
    error = error_of(client.get(f"/v1/jobs/{job_id}/report"), 404)
    assert error["message"] == "no report yet, job is queued"

    job_queue.update(job_id, status=JobStatus.running)
    error = error_of(client.get(f"/v1/jobs/{job_id}/report"), 404)
    assert error["message"] == "no report yet, job is running"
    assert error["details"] == [{"job_id": job_id, "status": "running"}]

    report = {"verdict": "pass", "checks": [{"name": "loss_falls", "verdict": "pass", "value": 1.2}]}
    job_queue.set_report(job_id, report)
    response = client.get(f"/v1/jobs/{job_id}/report")
    assert response.status_code == 200
    assert response.json() == report


# -- routes, docs, health ---------------------------------------------------------------------------


def test_unknown_route_and_method_share_error_shape(client: httpx.Client) -> None:
    assert error_of(client.get("/v2/jobs"), 404)["code"] == "not_found"
    assert error_of(client.get("/"), 404)["code"] == "not_found"
    assert error_of(client.delete("/healthz"), 405)["code"] == "method_not_allowed"


def test_openapi_and_docs(client: httpx.Client) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    doc = schema.json()
    assert doc["info"]["title"] == "simtrain gateway"
    assert doc["info"]["version"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/report", "/readyz"} <= set(doc["paths"])
    assert "JobSpec" in doc["components"]["schemas"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_follows_the_data_service(client: httpx.Client, data_service: HealthServer) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"

    data_service.servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    error = error_of(client.get("/readyz"), 503)
    assert "data_service" in error["message"] and "redis" not in error["message"]

    data_service.stop()
    error = error_of(client.get("/readyz"), 503)
    assert error["code"] == "dependency_unavailable"
    assert "data_service" in error["message"]
    down = {d["dependency"]: d for d in error["details"] if not d["ok"]}
    assert set(down) == {"data_service"}
    assert down["data_service"]["address"] == data_service.address


def test_readyz_with_closed_data_service_port(redis_url: str, key_prefix: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, data_service_addr=CLOSED_GRPC)
    with serve(create_app(settings)) as client:
        started = time.monotonic()
        error = error_of(client.get("/readyz"), 503)
        assert time.monotonic() - started < 5
    assert "data_service" in error["message"]
    assert "redis" not in error["message"]


# -- Redis down -------------------------------------------------------------------------------------


def test_redis_down_is_503_not_500(data_service: HealthServer) -> None:
    settings = Settings(redis_url=CLOSED_REDIS, key_prefix="unused:", data_service_addr=data_service.address)
    with serve(create_app(settings)) as client:
        for response in (
            client.post("/v1/jobs", json=SPEC),
            client.get(f"/v1/jobs/{'a' * 32}"),
            client.get(f"/v1/jobs/{'a' * 32}/metrics"),
            client.get(f"/v1/jobs/{'a' * 32}/report"),
        ):
            assert error_of(response, 503)["code"] == "dependency_unavailable"
        assert client.get("/healthz").status_code == 200
        error = error_of(client.get("/readyz"), 503)
        assert "redis" in error["message"] and "data_service" not in error["message"]
        # Junk ids and invalid specs are answered without asking Redis.
        assert error_of(client.get("/v1/jobs/not-a-job"), 404)["code"] == "not_found"
        assert error_of(client.post("/v1/jobs", json={}), 422)["code"] == "validation_error"


# -- python -m gateway ------------------------------------------------------------------------------


def read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "no output from the gateway process"
    return proc.stdout.readline().strip()


def test_module_runs_and_stops_on_sigterm(redis_url: str, key_prefix: str) -> None:
    settings = {"SIMTRAIN_GATEWAY_PORT": "0", "REDIS_URL": redis_url, "SIMTRAIN_KEY_PREFIX": key_prefix}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=REPO,
        env=os.environ | settings,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = read_line(proc, timeout_s=30)
        prefix = "gateway listening on http://127.0.0.1:"
        assert line.startswith(prefix), line
        port = int(line.removeprefix(prefix))
        assert port > 0
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.json() == {"status": "ok"}

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
