"""The gateway over real HTTP, against a real Redis and real gRPC servers (fakes, the real data service)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from grpc_health.v1 import health_pb2

from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import FakeDataService, GrpcServer, error_of, serve

REPO = Path(__file__).resolve().parents[2]
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_GRPC = "127.0.0.1:1"

SPEC: dict[str, Any] = {
    "dataset": {"module": "text", "source": "tiny.txt", "tokenizer": "char"},
    "model": {"model_type": "gpt-nano"},
    "training": {"max_iters": 50, "batch_size": 4, "block_size": 16},
}


@pytest.fixture
def data_service() -> Iterator[GrpcServer]:
    """A stand-in data service that serves only health checks (DataService calls are UNIMPLEMENTED)."""
    server = GrpcServer()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_url: str, key_prefix: str, data_service: GrpcServer, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_service_addr=data_service.address,
        state_dir=tmp_path / "var",
    )


@pytest.fixture
def client(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    # Depends on job_queue so the test's keys are deleted afterwards.
    with serve(create_app(settings)) as c:
        yield c


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
    assert job["verdict"] is None  # no report yet


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


RAW_SPEC = '{"dataset": {"module": "text", "source": "tiny.txt"%s}, "training": {%s}, "checks": {%s}}'


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (RAW_SPEC % ("", '"grad_norm_clip": Infinity', ""), "training.grad_norm_clip", "not a finite number"),
        (RAW_SPEC % ("", '"learning_rate": NaN', ""), "training.learning_rate", "not a finite number"),
        (RAW_SPEC % ("", "", '"gap_warn": -Infinity'), "checks.gap_warn", "not a finite number"),
        (RAW_SPEC % (', "options": {"x": NaN}', "", ""), "dataset.options.x", "not a finite number"),
        (RAW_SPEC % ("", '"max_iters": true', ""), "training.max_iters", "not true or false"),
    ],
)
def test_non_finite_and_boolean_numbers_are_422(
    client: httpx.Client, job_queue: JobQueue, body: str, field: str, words: str
) -> None:
    """Python's json reads NaN and Infinity: they were stored as null, and the job could not be read."""
    response = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    error = error_of(response, 422)
    assert [d["field"] for d in error["details"]] == [field]
    assert words in error["details"][0]["message"] and field in error["message"]
    assert job_queue.r.exists(job_queue.stream) == 0


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
        (b'{"dataset": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
        (b'{"training": {"max_iters": ' + b"1" * 100_000 + b"}}", "a number with too many digits"),
    ],
)
def test_unparsable_bodies_are_422(client: httpx.Client, content: bytes, words: str) -> None:
    response = client.post("/v1/jobs", content=content, headers={"content-type": "application/json"})
    error = error_of(response, 422)
    assert error["details"] == [
        {"field": "body", "in": "body", "message": f"malformed JSON: {words}", "type": "json_invalid"}
    ]


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

    failed = submit(client)
    job_queue.update(failed, status=JobStatus.failed)
    for what, path in [("report", "report"), ("report", "report.html"), ("checkpoint", "checkpoint")]:
        error = error_of(client.get(f"/v1/jobs/{failed}/{path}"), 404)
        assert error["message"] == f"the job failed without a {what}; none will come"

    report = {"verdict": "pass", "checks": [{"name": "loss_falls", "verdict": "pass", "value": 1.2}]}
    job_queue.set_report(job_id, report)
    response = client.get(f"/v1/jobs/{job_id}/report")
    assert response.status_code == 200
    assert response.json() == report
    # The verdict rides on the record, for the job, its events and the list alike.
    assert client.get(f"/v1/jobs/{job_id}").json()["verdict"] == "pass"
    listed = {j["id"]: j["verdict"] for j in client.get("/v1/jobs").json()["jobs"]}
    assert listed[job_id] == "pass"


# -- routes, docs, health ---------------------------------------------------------------------------


def test_unknown_route_and_method_share_error_shape(client: httpx.Client) -> None:
    assert error_of(client.get("/v2/jobs"), 404)["code"] == "not_found"
    assert error_of(client.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(client.delete("/healthz"), 405)["code"] == "method_not_allowed"


def test_openapi_and_docs(client: httpx.Client) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    doc = schema.json()
    assert doc["info"]["title"] == "simtrain gateway"
    assert doc["info"]["version"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/report", "/readyz"} <= set(doc["paths"])
    assert "JobSpec" in doc["components"]["schemas"]
    assert "/v1/sources" in doc["paths"] and "get" in doc["paths"]["/v1/sources"]


ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.parametrize(("page", "marker"), [("/docs", "swagger-ui"), ("/redoc", "redoc")])
def test_api_docs_pages_load_every_asset_from_the_gateway(
    client: httpx.Client, page: str, marker: str
) -> None:
    shell = client.get(page)
    assert shell.status_code == 200 and f'id="{marker}"' in shell.text
    assets = ASSET.findall(shell.text)
    assert "/static/openapi.js" in assets and any(a.startswith("/static/vendor/") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), f"{page} loads {asset} from elsewhere than the gateway"
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 100, asset


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_follows_the_data_service(client: httpx.Client, data_service: GrpcServer) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"

    data_service.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
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


def test_redis_down_is_503_not_500(data_service: GrpcServer) -> None:
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
        assert '"GET /healthz HTTP/1.1" 200' in read_line(proc, timeout_s=10)  # the access log

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- idempotent submit ------------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_job(client: httpx.Client, job_queue: JobQueue) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json=SPEC, headers=headers)
    again = client.post("/v1/jobs", json=SPEC, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert first.headers["idempotent-replayed"] == "false"
    assert again.headers["idempotent-replayed"] == "true"
    assert job_queue.r.xlen(job_queue.stream) == 1

    other = client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "order-43"})
    assert other.json()["id"] != first.json()["id"]
    plain = [submit(client), submit(client)]
    assert plain[0] != plain[1]


def test_idempotency_key_with_another_spec_is_409(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "k1"}
    job_id = client.post("/v1/jobs", json=SPEC, headers=headers).json()["id"]
    changed = with_changes(training={"max_iters": 51})
    error = error_of(client.post("/v1/jobs", json=changed, headers=headers), 409)
    assert error["code"] == "idempotency_conflict"
    assert error["details"] == [{"job_id": job_id}]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
def test_bad_idempotency_key_is_422(client: httpx.Client, key: str) -> None:
    error = error_of(client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": key}), 422)
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert error["details"][0]["in"] == "header"


def test_idempotency_key_of_a_deleted_job_makes_a_new_one(client: httpx.Client, job_queue: JobQueue) -> None:
    headers = {"Idempotency-Key": "again"}
    job_id = client.post("/v1/jobs", json=SPEC, headers=headers).json()["id"]
    job_queue.finish(job_id, JobStatus.failed, "x")
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    fresh = client.post("/v1/jobs", json=SPEC, headers=headers)
    assert fresh.status_code == 202 and fresh.json()["id"] != job_id


# -- listing ----------------------------------------------------------------------------------------


def test_list_pages_through_every_job_newest_first(client: httpx.Client) -> None:
    ids = [submit(client) for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert pages == 3
    assert client.get("/v1/jobs").json()["next_cursor"] is None


def test_list_filters_by_status(client: httpx.Client, job_queue: JobQueue) -> None:
    ids = [submit(client) for _ in range(4)]
    job_queue.finish(ids[1], JobStatus.succeeded)
    job_queue.finish(ids[3], JobStatus.succeeded)
    done = client.get("/v1/jobs", params={"status": "succeeded"}).json()
    assert [job["id"] for job in done["jobs"]] == [ids[3], ids[1]]
    assert all(job["status"] == "succeeded" for job in done["jobs"])
    queued = client.get("/v1/jobs", params={"status": "queued", "limit": 1}).json()
    assert [job["id"] for job in queued["jobs"]] == [ids[2]]
    rest = client.get("/v1/jobs", params={"status": "queued", "cursor": queued["next_cursor"]}).json()
    assert [job["id"] for job in rest["jobs"]] == [ids[0]]


def test_list_filters_by_tags_and_name(client: httpx.Client, job_queue: JobQueue) -> None:
    named = [
        submit(client, SPEC | {"name": "Baseline run", "tags": ["lr", "v1"]}),
        submit(client, SPEC | {"name": "lower lr", "tags": ["lr", "v2"]}),
        submit(client, SPEC | {"tags": ["v2"]}),
        submit(client),
    ]

    def listed(**params: Any) -> list[str]:
        return [job["id"] for job in client.get("/v1/jobs", params=params).json()["jobs"]]

    assert listed(tag="lr") == [named[1], named[0]]
    assert listed(tag=["lr", "v2"]) == [named[1]]  # every tag given
    assert listed(tag=["v1", "v2"]) == []
    assert listed(name="LR") == [named[1]]  # contained, in any case
    assert listed(name="run", tag="v1") == [named[0]]
    assert listed(tag="v2", status="queued", limit=1) == [named[2]]
    assert listed() == named[::-1]
    record = client.get(f"/v1/jobs/{named[0]}").json()
    assert record["spec"]["name"] == "Baseline run" and record["spec"]["tags"] == ["lr", "v1"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "x" * 129}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"tags": ["has space"]}, "tags.0"),
        ({"tags": ["a", "b,c"]}, "tags.1"),
        ({"tags": [f"t{i}" for i in range(17)]}, "tags"),
    ],
)
def test_bad_name_or_tags_are_422_naming_the_field(client: httpx.Client, spec: dict, field: str) -> None:
    error = error_of(client.post("/v1/jobs", json=SPEC | spec), 422)
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"tag": "two words"}, "tag.0"),
        ({"tag": ["ok", "a,b"]}, "tag.1"),
        ({"tag": [f"t{i}" for i in range(17)]}, "tag"),
        ({"name": ""}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "Zm9vYmFy"}, "cursor"),
        ({"cursor": "x" * 300}, "cursor"),
    ],
)
def test_bad_list_query_is_422(client: httpx.Client, params: dict[str, Any], field: str) -> None:
    error = error_of(client.get("/v1/jobs", params=params), 422)
    assert error["details"][0]["field"] == field
    assert error["details"][0]["in"] == "query"


# -- cancel and delete ------------------------------------------------------------------------------


def test_cancel_a_queued_job_at_once(client: httpx.Client) -> None:
    job_id = submit(client)
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"id": job_id, "status": "cancelled", "cancel_requested": False}
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200  # again: no change, no error


def test_cancel_a_running_job_asks_its_trainer(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)
    job_queue.start(job_id, "w1")
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json() == {"id": job_id, "status": "running", "cancel_requested": True}
    assert job_queue.cancel_requested(job_id)


def test_cancel_finished_or_unknown(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)
    job_queue.finish(job_id, JobStatus.succeeded)
    error = error_of(client.post(f"/v1/jobs/{job_id}/cancel"), 409)
    assert error["code"] == "job_finished"
    error_of(client.post(f"/v1/jobs/{'0' * 32}/cancel"), 404)
    error_of(client.post("/v1/jobs/nothex/cancel"), 404)


def test_delete_a_finished_job_and_its_files(client: httpx.Client, job_queue: JobQueue, settings: Settings):
    job_id = submit(client)
    job_queue.start(job_id, "w1")
    job_queue.add_metrics(job_id, {"step": 10, "train/loss": 2.0})
    error = error_of(client.delete(f"/v1/jobs/{job_id}"), 409)
    assert error["code"] == "job_not_finished" and "cancel it first" in error["message"]

    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "checkpoint.pt").write_bytes(b"weights")
    job_queue.set_report(job_id, {"final": {}})
    job_queue.finish(job_id, JobStatus.succeeded)
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 204 and response.content == b""
    assert not job_dir.exists()
    assert job_queue.r.keys(f"{job_queue.prefix}job:{job_id}*") == []
    error_of(client.get(f"/v1/jobs/{job_id}"), 404)
    assert job_id not in [job["id"] for job in client.get("/v1/jobs").json()["jobs"]]
    error_of(client.delete(f"/v1/jobs/{job_id}"), 404)


# -- checkpoint -------------------------------------------------------------------------------------


def test_checkpoint_download(client: httpx.Client, settings: Settings) -> None:
    job_id = submit(client)
    error = error_of(client.get(f"/v1/jobs/{job_id}/checkpoint"), 404)
    assert error["code"] == "checkpoint_not_ready"
    path = settings.jobs_dir / job_id / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    payload = bytes(range(256)) * 1000
    path.write_bytes(payload)
    response = client.get(f"/v1/jobs/{job_id}/checkpoint")
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"] == "application/octet-stream"
    assert f'filename="{job_id}-checkpoint.pt"' in response.headers["content-disposition"]
    error_of(client.get(f"/v1/jobs/{'0' * 32}/checkpoint"), 404)


# -- live events ------------------------------------------------------------------------------------


def read_events(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> list[tuple]:
    """Every event of an SSE response until the server closes it, as (event, data, id)."""
    events, event, data, event_id = [], "message", [], None
    with client.stream("GET", path, headers=headers or {}, timeout=20) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if data:
                    events.append((event, json.loads("\n".join(data)), event_id))
                event, data, event_id = "message", [], None
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
    return events


def test_events_stream_status_and_metrics_live(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)

    def trainer() -> None:
        time.sleep(0.3)
        job_queue.start(job_id, "w1")
        for step in (10, 20, 30):
            time.sleep(0.1)
            job_queue.add_metrics(job_id, {"step": step, "train/loss": 3.0 - step / 100})
        job_queue.add_metrics(job_id, {"step": 50, "val/loss": 2.4})
        job_queue.finish(job_id, JobStatus.succeeded)

    thread = threading.Thread(target=trainer)
    started = time.monotonic()
    thread.start()
    events = read_events(client, f"/v1/jobs/{job_id}/events")
    thread.join()
    assert time.monotonic() - started < 10
    kinds = [e[0] for e in events]
    assert kinds[0] == "status" and events[0][1]["status"] == "queued"
    assert [e[1]["status"] for e in events if e[0] == "status"] == ["queued", "running", "succeeded"]
    metrics = [e for e in events if e[0] == "metrics"]
    assert [m[1]["step"] for m in metrics] == [10, 20, 30, 50]
    assert all(m[2] for m in metrics), "metrics events carry their stream id"
    assert kinds[-1] == "end" and events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["progress"] == {"step": 50, "max_iters": 50}

    resumed = read_events(client, f"/v1/jobs/{job_id}/events", {"Last-Event-ID": metrics[1][2]})
    assert [e[1]["step"] for e in resumed if e[0] == "metrics"] == [30, 50]
    ignored = read_events(client, f"/v1/jobs/{job_id}/events", {"Last-Event-ID": "junk"})
    assert len([e for e in ignored if e[0] == "metrics"]) == 4


def test_events_of_unknown_job_is_404(client: httpx.Client) -> None:
    error_of(client.get(f"/v1/jobs/{'0' * 32}/events"), 404)
    error_of(client.get("/v1/jobs/NOPE/events"), 404)


def test_events_end_when_the_job_is_deleted(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)

    def delete_soon() -> None:
        time.sleep(0.3)
        job_queue.r.delete(f"{job_queue.prefix}job:{job_id}")

    threading.Thread(target=delete_soon).start()
    events = read_events(client, f"/v1/jobs/{job_id}/events")
    assert events[-1] == ("end", {"id": job_id, "status": "deleted"}, None)


# -- models, modules, datasets, uploads -------------------------------------------------------------


def test_model_presets(client: httpx.Client) -> None:
    presets = {p["model_type"]: p for p in client.get("/v1/models").json()["presets"]}
    assert presets["gpt-nano"] == {"model_type": "gpt-nano", "n_layer": 3, "n_head": 3, "n_embd": 48}


@pytest.fixture
def fake_data() -> Iterator[tuple[FakeDataService, GrpcServer]]:
    fake = FakeDataService()
    server = GrpcServer(fake)
    yield fake, server
    server.stop()


def gateway_with(settings: Settings, **gateway: Any) -> Any:
    return serve(create_app(settings, GatewaySettings(**gateway)))


@pytest.fixture
def data_client(
    settings: Settings, fake_data: tuple[FakeDataService, GrpcServer], job_queue: JobQueue
) -> Iterator[httpx.Client]:
    _, server = fake_data
    with gateway_with(settings.model_copy(update={"data_service_addr": server.address})) as c:
        yield c


def test_modules_and_datasets(data_client: httpx.Client) -> None:
    modules = data_client.get("/v1/modules").json()["modules"]
    assert modules == [
        {
            "name": "text",
            "description": "Text",
            "options": [{"name": "val_fraction", "description": "held-out share", "default": "0.1"}],
        }
    ]
    listed = data_client.get("/v1/datasets").json()["datasets"]
    assert [d["id"] for d in listed] == ["ds-1"]
    one = data_client.get("/v1/datasets/ds-1").json()
    assert one == {
        "id": "ds-1",
        "module": "text",
        "source": "tiny.txt",
        "tokenizer": "char",
        "packing": "stream",
        "vocab_size": 42,
        "splits": {"train": {"tokens": 900, "examples": 9}, "val": {"tokens": 100, "examples": 0}},
        "stats": {"chars": 1000},
        "warnings": ["short source"],
    }
    error = error_of(data_client.get("/v1/datasets/nope"), 404)
    assert "no dataset nope" in error["message"]
    error_of(data_client.get("/v1/datasets/bad%20id"), 404)


def test_prepare_maps_data_service_errors(data_client: httpx.Client) -> None:
    body = {"module": "text", "source": "notes.txt", "tokenizer": "byte", "options": {"lower": True}}
    prepared = data_client.post("/v1/datasets", json=body)
    assert prepared.status_code == 200, prepared.text
    assert prepared.json()["id"] == "ds-notes.txt" and prepared.json()["tokenizer"] == "byte"

    error = error_of(data_client.post("/v1/datasets", json=body | {"source": "bad.txt"}), 422)
    assert error["code"] == "invalid_argument" and "not UTF-8" in error["message"]
    error = error_of(data_client.post("/v1/datasets", json=body | {"source": "boom.txt"}), 502)
    assert error["code"] == "data_service_error"
    error = error_of(data_client.post("/v1/datasets", json={"source": "x", "colour": 1}), 422)
    assert {d["field"] for d in error["details"]} == {"module", "colour"}


def test_upload_streams_in_chunks(
    settings: Settings, fake_data: tuple[FakeDataService, GrpcServer], job_queue: JobQueue
) -> None:
    fake, server = fake_data
    settings = settings.model_copy(update={"data_service_addr": server.address})
    payload = os.urandom(3 * 65536 + 123)

    def body() -> Iterator[bytes]:  # no Content-Length: the gateway cannot know the size up front
        for i in range(0, len(payload), 10_000):
            yield payload[i : i + 10_000]

    with gateway_with(settings, upload_chunk_bytes=65536) as c:
        response = c.post("/v1/sources", params={"filename": "notes.txt"}, content=body())
    assert response.status_code == 201, response.text
    assert response.json() == {
        "source": "uploads/notes.txt",
        "size_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    [upload] = fake.uploads
    assert upload["filename"] == "notes.txt"
    assert upload["chunks"] == [65536, 65536, 65536, 123]


def test_upload_refused_by_the_data_service(data_client: httpx.Client) -> None:
    error = error_of(data_client.post("/v1/sources", params={"filename": "refuse.txt"}, content=b"x"), 422)
    assert "not a name we take" in error["message"]
    empty = data_client.post("/v1/sources", params={"filename": "empty.txt"}, content=b"")
    assert empty.status_code == 201 and empty.json()["size_bytes"] == 0


@pytest.mark.parametrize("name", ["", "a/b.txt", "x" * 256, "nul\x00.txt"])
def test_upload_needs_a_plain_filename(data_client: httpx.Client, name: str) -> None:
    error = error_of(data_client.post("/v1/sources", params={"filename": name}, content=b"x"), 422)
    assert error["details"][0]["field"] == "filename"
    error_of(data_client.post("/v1/sources", content=b"x"), 422)


def test_upload_over_the_limit_is_413_and_cancelled(
    settings: Settings, fake_data: tuple[FakeDataService, GrpcServer], job_queue: JobQueue
) -> None:
    fake, server = fake_data
    settings = settings.model_copy(update={"data_service_addr": server.address})

    def body() -> Iterator[bytes]:
        for _ in range(50):
            yield b"y" * 4096

    with gateway_with(settings, max_upload_bytes=64 * 1024, upload_chunk_bytes=8192) as c:
        declared = c.post("/v1/sources", params={"filename": "big.txt"}, content=b"z" * (65 * 1024))
        error = error_of(declared, 413)
        assert error["code"] == "payload_too_large" and "65,536" in error["message"]
        assert fake.uploads == []  # refused before a byte reached the data service
        streamed = c.post("/v1/sources", params={"filename": "big.txt"}, content=body())
        assert error_of(streamed, 413)["code"] == "payload_too_large"
    deadline = time.monotonic() + 10
    while not all(u["ended"] for u in fake.uploads):
        assert time.monotonic() < deadline, "the data service is still reading a cut-off upload"
        time.sleep(0.05)
    assert all(not u["complete"] for u in fake.uploads), "the data service must not keep a partial upload"


def test_data_service_calls_map_grpc_codes(client: httpx.Client, settings: Settings) -> None:
    # `client` talks to a server with only the health service: every DataService call is UNIMPLEMENTED.
    for response in (
        client.get("/v1/modules"),
        client.get("/v1/datasets"),
        client.get("/v1/datasets/ds-1"),
        client.post("/v1/datasets", json={"module": "text", "source": "a.txt"}),
        client.post("/v1/sources", params={"filename": "a.txt"}, content=b"abc"),
        client.get("/v1/sources"),
    ):
        assert error_of(response, 501)["code"] == "not_implemented"
    unlisted = error_of(client.get("/v1/sources"), 501)["message"]
    assert "cannot list its uploaded sources" in unlisted and "ListSources" not in unlisted

    down = settings.model_copy(update={"data_service_addr": CLOSED_GRPC})
    with serve(create_app(down)) as c:
        for response in (
            c.get("/v1/modules"),
            c.get("/v1/datasets/ds-1"),
            c.post("/v1/sources", params={"filename": "a.txt"}, content=b"abc"),
        ):
            error = error_of(response, 503)
            assert error["code"] == "dependency_unavailable" and "data service" in error["message"]


def test_datasets_against_the_real_data_service(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from data_service.server import serve as serve_data
    from simtrain.cli import DEMO_CORPUS

    data_root = tmp_path / "data"
    data_root.mkdir()
    shutil.copyfile(DEMO_CORPUS, data_root / "tiny.txt")
    data_settings = Settings(data_root=data_root, state_dir=tmp_path / "var", data_service_host="127.0.0.1")
    server, port = serve_data(data_settings, port=0)
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, data_service_addr=f"127.0.0.1:{port}")
    try:
        with serve(create_app(settings)) as c:
            names = [m["name"] for m in c.get("/v1/modules").json()["modules"]]
            assert "text" in names
            prepared = c.post("/v1/datasets", json={"module": "text", "source": "tiny.txt"})
            assert prepared.status_code == 200, prepared.text
            info = prepared.json()
            assert info["vocab_size"] > 10 and info["splits"]["train"]["tokens"] > 0
            assert c.get(f"/v1/datasets/{info['id']}").json()["id"] == info["id"]
            error = error_of(c.post("/v1/datasets", json={"module": "text", "source": "missing.txt"}), 404)
            assert "missing.txt" in error["message"]
            error_of(c.post("/v1/datasets", json={"module": "text", "source": "../etc/passwd"}), 422)
            error_of(c.get("/v1/datasets/0123456789abcdef"), 404)
            listed = c.get("/v1/datasets")
            if listed.status_code == 200:  # ListDatasets is served by newer data services
                assert info["id"] in [d["id"] for d in listed.json()["datasets"]]
            uploaded = c.post("/v1/sources", params={"filename": "up.txt"}, content=b"hello world\n" * 100)
            if uploaded.status_code == 201:  # likewise UploadSource
                source = uploaded.json()["source"]
                assert (data_root / source).read_bytes() == b"hello world\n" * 100
    finally:
        server.stop(grace=None).wait()


def test_uploaded_sources_are_listed(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from data_service.server import serve as serve_data

    data_root = tmp_path / "data"
    data_root.mkdir()
    # The state (prepared datasets) under the data root, as a deployment may keep it: never a source.
    data_settings = Settings(data_root=data_root, state_dir=data_root / "var", data_service_host="127.0.0.1")
    server, port = serve_data(data_settings, port=0)
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, data_service_addr=f"127.0.0.1:{port}")
    try:
        with serve(create_app(settings)) as c:
            assert c.get("/v1/sources").json() == {"sources": []}
            for name, body in (("second notes.txt", b"two\n" * 50), ("first.txt", b"one\n" * 400)):
                assert c.post("/v1/sources", params={"filename": name}, content=body).status_code == 201
            prepared = c.post("/v1/datasets", json={"module": "text", "source": "first.txt"})
            assert prepared.status_code == 200, prepared.text
            listed = c.get("/v1/sources")
    finally:
        server.stop(grace=None).wait()
    assert listed.status_code == 200
    sources = listed.json()["sources"]
    assert [(s["name"], s["size_bytes"]) for s in sources] == [("first.txt", 1600), ("second_notes.txt", 200)]
    for source in sources:
        assert set(source) == {"name", "size_bytes", "uploaded_at"}
        stored = datetime.fromisoformat(source["uploaded_at"])
        assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
        assert abs(stored.timestamp() - time.time()) < 120


# -- security ---------------------------------------------------------------------------------------

TOKEN = "s3cret-token-value"


@pytest.fixture
def secured(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    with gateway_with(settings, api_token=TOKEN) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", f"/v1/jobs/{'a' * 32}"),
        ("GET", f"/v1/jobs/{'a' * 32}/events"),
        ("DELETE", f"/v1/jobs/{'a' * 32}"),
        ("GET", "/v1/modules"),
        ("POST", "/v1/sources"),
        ("GET", "/v1/sources"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/route"),
    ],
)
def test_token_is_required(secured: httpx.Client, method: str, path: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer"},
    ):
        error = error_of(secured.request(method, path, headers=headers), 401)
        assert error["code"] == "unauthorized"
    assert secured.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401


def test_token_opens_the_api(secured: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = secured.post("/v1/jobs", json=SPEC, headers=auth)
    assert response.status_code == 202
    assert secured.get(f"/v1/jobs/{response.json()['id']}", headers=auth).status_code == 200
    assert secured.get("/v1/jobs", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert secured.get("/healthz").json() == {"status": "ok"}
    page = secured.get("/")
    assert page.status_code == 200 and "<title>simtrain</title>" in page.text
    assert secured.get("/static/app.js").status_code == 200
    assert secured.get("/jobs/abc").status_code == 200


def test_api_docs_work_with_a_token(secured: httpx.Client) -> None:
    # Swagger UI's shell loads without the token; the document declares the bearer scheme for Authorize.
    # That the page sends the web page's saved token is tested in a browser (tests/e2e/test_web_token.py).
    docs = secured.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert secured.get("/redoc").status_code == 200
    assert secured.get("/static/vendor/swagger-ui-bundle.js").status_code == 200
    error_of(secured.get("/openapi.json"), 401)
    doc = secured.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Required when the gateway runs with SIMTRAIN_API_TOKEN set",
    }
    assert doc["security"] == [{"bearerAuth": []}]


def test_token_never_reaches_the_logs(
    settings: Settings, job_queue: JobQueue, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(settings, GatewaySettings(api_token=TOKEN))
    with serve(app, log_level="debug") as c:  # access log and all
        for token in (TOKEN, TOKEN + "-wrong", "x"):
            auth = {"Authorization": f"Bearer {token}"}
            c.get("/v1/jobs", headers=auth)
            c.post("/v1/jobs", content=b"{bad", headers=auth | {"content-type": "application/json"})
            c.get("/metrics", headers=auth)
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "GET /v1/jobs" in logged  # the access log was on
    assert TOKEN not in logged


def test_body_size_limit(settings: Settings, job_queue: JobQueue) -> None:
    with gateway_with(settings, max_body_bytes=4096) as c:
        big = json.dumps(SPEC | {"checks": {"padding": "x" * 5000}}).encode()
        error = error_of(c.post("/v1/jobs", content=big, headers={"content-type": "application/json"}), 413)
        assert error["code"] == "payload_too_large"

        def chunked() -> Iterator[bytes]:
            yield big[:3000]
            yield big[3000:]

        error = error_of(
            c.post("/v1/jobs", content=chunked(), headers={"content-type": "application/json"}), 413
        )
        assert error["code"] == "payload_too_large"
        assert c.post("/v1/jobs", json=SPEC).status_code == 202
    assert job_queue.r.xlen(job_queue.stream) == 1


def test_cors_is_off_by_default(client: httpx.Client, settings: Settings, job_queue: JobQueue) -> None:
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in client.get("/v1/jobs", headers=origin).headers
    preflight = client.options("/v1/jobs", headers=origin | {"Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers

    with gateway_with(settings, cors_origins="https://example.org", api_token=TOKEN) as c:
        preflight = c.options(
            "/v1/jobs",
            headers=origin
            | {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
        got = c.get("/v1/jobs", headers=origin | {"Authorization": f"Bearer {TOKEN}"})
        assert got.headers["access-control-allow-origin"] == "https://example.org"
        other = c.get(
            "/v1/jobs", headers={"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}
        )
        assert "access-control-allow-origin" not in other.headers


# -- Prometheus -------------------------------------------------------------------------------------


def metric_value(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in metrics:\n{text}")


def test_prometheus_metrics(client: httpx.Client, job_queue: JobQueue) -> None:
    ids = [submit(client) for _ in range(3)]
    job_queue.start(ids[0], "w1")
    job_queue.finish(ids[1], JobStatus.failed, "x")
    job_queue.heartbeat("w1", ttl_s=30, state="busy")
    job_queue.heartbeat("w2", ttl_s=30, state="idle")
    client.get(f"/v1/jobs/{ids[0]}")
    client.get(f"/v1/jobs/{'0' * 32}")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, "simtrain_redis_up") == 1
    assert metric_value(text, "simtrain_jobs", '{status="queued"}') == 1
    assert metric_value(text, "simtrain_jobs", '{status="running"}') == 1
    assert metric_value(text, "simtrain_jobs", '{status="failed"}') == 1
    assert metric_value(text, "simtrain_jobs", '{status="succeeded"}') == 0
    assert metric_value(text, "simtrain_queue_depth") == 1
    assert metric_value(text, "simtrain_trainers") == 2
    assert metric_value(text, "simtrain_trainer_busy", '{worker="w1"}') == 1
    assert metric_value(text, "simtrain_trainer_busy", '{worker="w2"}') == 0
    assert metric_value(text, "simtrain_trainer_heartbeat_timestamp_seconds", '{worker="w1"}') > 0
    assert metric_value(text, "simtrain_jobs_submitted_total") == 3
    get_count = '{method="GET",route="/v1/jobs/{job_id}",status="200"}'
    assert metric_value(text, "simtrain_http_request_duration_seconds_count", get_count) == 1
    missing = '{method="GET",route="/v1/jobs/{job_id}",status="404"}'
    assert metric_value(text, "simtrain_http_request_duration_seconds_count", missing) == 1
    assert ids[0] not in text  # route templates, never raw paths

    job_queue.r.delete(f"{job_queue.prefix}worker:w2")
    assert metric_value(client.get("/metrics").text, "simtrain_trainers") == 1


def test_metrics_with_redis_down(data_service: GrpcServer) -> None:
    settings = Settings(redis_url=CLOSED_REDIS, key_prefix="unused:", data_service_addr=data_service.address)
    with serve(create_app(settings)) as c:
        response = c.get("/metrics")
    assert response.status_code == 200
    assert metric_value(response.text, "simtrain_redis_up") == 0


# -- the OpenAPI document ---------------------------------------------------------------------------


def test_openapi_is_complete_with_examples(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    expected = {
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}", "delete"),
        ("/v1/jobs/{job_id}/cancel", "post"),
        ("/v1/jobs/{job_id}/fork", "post"),
        ("/v1/jobs/{job_id}/metrics", "get"),
        ("/v1/jobs/{job_id}/events", "get"),
        ("/v1/jobs/{job_id}/report", "get"),
        ("/v1/jobs/{job_id}/checkpoint", "get"),
        ("/v1/models", "get"),
        ("/v1/modules", "get"),
        ("/v1/datasets", "get"),
        ("/v1/datasets", "post"),
        ("/v1/datasets/{dataset_id}", "get"),
        ("/v1/sources", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    assert expected <= {(path, method) for path, ops in paths.items() for method in ops}
    assert all(path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics") for path in paths)
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert {"text", "prepared", "minimal"} <= set(body["examples"])
    assert "Idempotency-Key" in [p["name"] for p in paths["/v1/jobs"]["post"]["parameters"]]
    assert "example" in paths["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert "text/event-stream" in paths["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    schemas = doc["components"]["schemas"]
    assert "example" in schemas["ForkRequest"]
    for name in ("ErrorBody", "Accepted", "JobPage", "CancelResult", "DatasetInfo", "Modules", "Uploaded"):
        assert name in schemas, name
    assert "example" in schemas["ErrorBody"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearerAuth": []}]
    assert paths["/healthz"]["get"]["security"] == []
    assert "401" in paths["/v1/jobs"]["get"]["responses"]
    assert "422" in paths["/v1/jobs"]["post"]["responses"]


# -- nothing a client sends is a 500 ----------------------------------------------------------------

JUNK_REQUESTS = [
    ("POST", "/v1/jobs", {"content": b"\x00" * 100}),
    ("POST", "/v1/jobs", {"json": {"dataset": {"id": "x" * 1000}}}),
    ("POST", "/v1/jobs", {"json": {"dataset": {"module": "text", "source": "a", "options": {"k": [1]}}}}),
    ("POST", "/v1/jobs", {"json": {"dataset": {"id": "ok"}, "training": {"max_iters": 10**30}}}),
    ("POST", "/v1/jobs", {"json": {"dataset": {"id": "ok"}, "training": {"learning_rate": "NaN"}}}),
    (
        "POST",
        "/v1/jobs",
        {"json": {"dataset": {"id": "ok"}, "model": {"n_layer": 1, "n_head": 0, "n_embd": 4}}},
    ),
    ("GET", "/v1/jobs", {"params": {"cursor": "////"}}),
    ("GET", "/v1/jobs", {"params": {"tag": "\x00"}}),
    ("POST", f"/v1/jobs/{'a' * 32}/fork", {"json": {"changes": {"training": {"max_iters": 10**30}}}}),
    (
        "POST",
        f"/v1/jobs/{'a' * 32}/fork",
        {"content": b"[1,2]", "headers": {"content-type": "application/json"}},
    ),
    ("GET", "/v1/jobs", {"params": {"cursor": "MSB4LXk="}}),
    ("GET", "/v1/jobs", {"params": {"cursor": "aW5mIGFiYw"}}),
    ("GET", "/v1/jobs/%ff%fe", {}),
    ("GET", "/v1/jobs/abc/metrics", {"params": {"since_step": 10**40}}),
    ("POST", "/v1/datasets", {"content": b"[1,2]", "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/datasets", {"json": {"module": "", "source": ""}}),
    ("GET", "/v1/datasets/" + "a" * 500, {}),
    ("POST", "/v1/sources", {"params": {"filename": "a\\b"}, "content": b"x"}),
    ("GET", f"/v1/jobs/{'a' * 32}/events", {"headers": {"Last-Event-ID": "1-1 event: x"}}),
    ("DELETE", "/v1/jobs", {}),
    ("PUT", "/v1/jobs/abc", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), JUNK_REQUESTS)
def test_no_client_input_is_a_500(data_client: httpx.Client, method: str, path: str, kwargs: dict) -> None:
    response = data_client.request(method, path, **kwargs)
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()["error"]) == {"code", "message", "details"}
