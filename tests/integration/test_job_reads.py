"""``GET /v1/jobs/{id}`` served beneath the framework (gateway.job_reads): the route's JSON, never stale.

Also the access log that ``python -m gateway`` writes in uvicorn's place (gateway.observability.AccessLog).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.job_reads import JobReads, RenderedRecords
from gateway.observability import AccessLog
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue, job_key
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve

SPEC: dict[str, Any] = {
    "dataset": {"module": "text", "source": "tiny.txt"},
    "training": {"max_iters": 50, "batch_size": 4, "block_size": 16},
}
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    # No data service: nothing here calls one.
    return Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_service_addr="127.0.0.1:1",
        state_dir=tmp_path / "var",
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI, job_queue: JobQueue) -> Iterator[httpx.Client]:
    with serve(app) as c:
        yield c


@pytest.fixture
def framework_only(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    """The same app without the fast path: every read goes through the route."""
    app = create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not JobReads]
    with serve(app) as c:
        yield c


def submit(client: httpx.Client) -> str:
    response = client.post("/v1/jobs", json=SPEC)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_the_fast_path_answers_as_the_route_does(
    app: FastAPI, client: httpx.Client, framework_only: httpx.Client, job_queue: JobQueue
) -> None:
    job_id = submit(client)
    assert len(app.state.job_records) == 0
    for change in (
        lambda: None,
        lambda: job_queue.start(job_id, "w1"),
        lambda: job_queue.add_metrics(job_id, {"step": 10, "train/loss": 2.5, "lr": 5e-4}),
        lambda: job_queue.add_metrics(job_id, {"step": 20, "train/loss": float("nan")}),
        lambda: job_queue.finish(job_id, JobStatus.failed, 'out of memory: "quoted" \u2603'),
    ):
        change()
        fast, full = client.get(f"/v1/jobs/{job_id}"), framework_only.get(f"/v1/jobs/{job_id}")
        record = job_queue.get(job_id)
        assert record is not None and fast.status_code == full.status_code == 200
        assert fast.content == full.content == record.model_dump_json().encode()
        assert fast.headers["content-type"] == full.headers["content-type"] == "application/json"
        assert fast.headers["content-length"] == full.headers["content-length"]
    assert len(app.state.job_records) == 1  # the fast path answered


def test_every_change_is_seen_at_once(client: httpx.Client, job_queue: JobQueue) -> None:
    job_id = submit(client)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"

    job_id = submit(client)
    client.get(f"/v1/jobs/{job_id}")
    job_queue.start(job_id, "w1")
    job_queue.add_metrics(job_id, {"step": 7, "train/loss": 3.0})
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "running" and job["progress"]["step"] == 7 and job["worker"] == "w1"
    job_queue.finish(job_id, JobStatus.succeeded)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert error_of(client.get(f"/v1/jobs/{job_id}"), 404)["code"] == "not_found"  # not the copy it held


def test_a_record_written_by_an_older_version_or_another_client(
    client: httpx.Client, framework_only: httpx.Client, job_queue: JobQueue
) -> None:
    # The fields every version wrote; the optional ones (metrics, step, attempts, ...) are absent.
    job_id = "0123456789abcdef"
    spec = '{"dataset": {"module": "text", "source": "tiny.txt"}}'
    fields = {
        "id": job_id,
        "status": "queued",
        "spec": spec,
        "max_iters": "300",
        "created_at": "1700000000.5",
    }
    job_queue.r.hset(job_key(job_queue.prefix, job_id), mapping=fields)
    fast = client.get(f"/v1/jobs/{job_id}")
    assert fast.status_code == 200
    assert fast.content == framework_only.get(f"/v1/jobs/{job_id}").content
    job = fast.json()
    assert job["progress"] == {"step": 0, "max_iters": 300} and job["metrics"] == {} and job["attempts"] == 0


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        # Stored before NaN and Infinity were refused: the JSON holds null where a number is required.
        (
            '{"dataset": {"module": "text", "source": "t.txt"}, "training": {"grad_norm_clip": null}}',
            "valid number",
        ),
        ("{corrupted", "Invalid JSON"),
    ],
)
def test_an_unreadable_record_reads_as_failed_with_why(
    client: httpx.Client, framework_only: httpx.Client, job_queue: JobQueue, spec: str, why: str
) -> None:
    readable = submit(client)
    job_id = "0123456789abcdef"
    fields = {"id": job_id, "status": "queued", "spec": spec, "max_iters": "300", "created_at": "1.5"}
    job_queue.r.hset(job_key(job_queue.prefix, job_id), mapping=fields)
    job_queue.r.zadd(job_queue.index, {job_id: 1.5})
    for reader in (client, framework_only):
        job = reader.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["spec"], job["progress"]) == (
            "failed",
            None,
            {"step": 0, "max_iters": 300},
        )
        assert job["error"].startswith("the job record cannot be read: JobSpec") and why in job["error"]
        page = reader.get("/v1/jobs")
        assert page.status_code == 200
        assert [j["id"] for j in page.json()["jobs"]] == [readable, job_id]
        assert [j["id"] for j in reader.get("/v1/jobs?status=failed").json()["jobs"]] == [job_id]
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}/metrics").json() == {"job_id": job_id, "metrics": []}


def test_no_such_job_is_the_routes_404_from_one_read(
    app: FastAPI, client: httpx.Client, framework_only: httpx.Client
) -> None:
    reads: list[str] = []
    hgetall = app.state.aredis.hgetall

    async def counted(key: str) -> dict[str, str]:
        reads.append(key)
        return await hgetall(key)

    app.state.aredis.hgetall = counted
    for job_id in ("abc123", "not-a-job"):
        fast, full = client.get(f"/v1/jobs/{job_id}"), framework_only.get(f"/v1/jobs/{job_id}")
        assert error_of(fast, 404) == error_of(full, 404)
        assert fast.headers["content-length"] == full.headers["content-length"]
    assert len(reads) == 1  # the well-formed id, once; the other never reaches Redis
    line = 'simtrain_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{job_id}",status="404"}'
    assert f"{line} 2.0" in client.get("/metrics").text


def test_timed_under_the_route_template(client: httpx.Client) -> None:
    job_id = submit(client)
    for _ in range(3):
        client.get(f"/v1/jobs/{job_id}")
    text = client.get("/metrics").text
    line = 'simtrain_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{job_id}",status="200"}'
    assert f"{line} 3.0" in text
    assert job_id not in text


def test_the_token_is_still_required(settings: Settings, job_queue: JobQueue) -> None:
    with serve(create_app(settings, GatewaySettings(api_token=TOKEN))) as secured:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        job_id = secured.post("/v1/jobs", json=SPEC, headers=auth).json()["id"]
        assert secured.get(f"/v1/jobs/{job_id}", headers=auth).json()["id"] == job_id
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            error = error_of(secured.get(f"/v1/jobs/{job_id}", headers=headers), 401)
            assert error["code"] == "unauthorized"


def test_rendered_records_are_bounded() -> None:
    records = RenderedRecords(size=2)
    spec = '{"dataset": {"module": "text", "source": "t.txt"}}'
    for job_id in ("a1", "b2", "c3"):
        fields = {"id": job_id, "status": "queued", "spec": spec, "max_iters": "1", "created_at": "1"}
        assert b'"id":"' + job_id.encode() in records.render(job_id, fields)
    assert len(records) == 2


# -- the access log -----------------------------------------------------------------------------------


def test_access_log_has_a_line_per_request_and_no_secrets(settings: Settings, job_queue: JobQueue) -> None:
    stream = io.StringIO()
    app = create_app(settings, GatewaySettings(api_token=TOKEN), access_log=AccessLog(stream))
    with serve(app) as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        job_id = c.post("/v1/jobs", json=SPEC, headers=auth).json()["id"]
        c.get(f"/v1/jobs/{job_id}", headers=auth)
        c.get(f"/v1/jobs/{job_id}")
        c.get("/v1/jobs/x%0AINFO: forged", params={"limit": "2"}, headers=auth)
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert '"POST /v1/jobs HTTP/1.1" 202' in lines[0]
    assert f'"GET /v1/jobs/{job_id} HTTP/1.1" 200' in lines[1]
    assert f'"GET /v1/jobs/{job_id} HTTP/1.1" 401' in lines[2]
    assert '"GET /v1/jobs/x%0AINFO%3A%20forged?limit=2 HTTP/1.1" 404' in lines[3]
    assert all(line.startswith("INFO:     127.0.0.1:") and line.endswith("ms") for line in lines)
    assert TOKEN not in stream.getvalue()


def test_access_log_masks_credentials_in_the_query(settings: Settings, job_queue: JobQueue) -> None:
    stream = io.StringIO()
    app = create_app(settings, GatewaySettings(api_token=TOKEN), access_log=AccessLog(stream))
    query = f"token={TOKEN}&limit=2&API_KEY={TOKEN}&client%5Fsecret={TOKEN}&password=&access_token={TOKEN}"
    with serve(app) as c:
        c.get(f"/v1/jobs?{query}")
        deadline = time.monotonic() + 5
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    (line,) = stream.getvalue().splitlines()
    masked = "token=***&limit=2&API_KEY=***&client%5Fsecret=***&password=&access_token=***"
    assert f'"GET /v1/jobs?{masked} HTTP/1.1" 401' in line  # a token is taken from the header only
    assert TOKEN not in line


def test_access_log_and_latency_have_the_requests_that_fail(settings: Settings, job_queue: JobQueue) -> None:
    stream = io.StringIO()
    app = create_app(settings, access_log=AccessLog(stream))

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    with serve(app, log_level="critical") as c:
        broken = c.get("/broken")
        assert error_of(broken, 500)["code"] == "internal_error"
        assert broken.headers["connection"] == "close"  # uvicorn closes it: the client must not reuse it
        metrics = c.get("/metrics").text
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = stream.getvalue().splitlines()
    assert '"GET /broken HTTP/1.1" 500' in lines[0], lines
    line = 'simtrain_http_request_duration_seconds_count{method="GET",route="/broken",status="500"} 1.0'
    assert line in metrics
