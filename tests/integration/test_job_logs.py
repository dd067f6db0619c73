"""A job's own log: written by a real trainer to Redis, read through the gateway with ``after`` paging."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from simtrain.client import GatewayClient, GatewayError
from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import LOG_LINES, JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve
from tests.integration.trainer_support import job_spec
from trainer_service.job_log import job_log
from trainer_service.worker import Worker


@pytest.fixture
def gateway(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    # Depends on job_queue so the test's keys are deleted afterwards.
    with serve(create_app(settings)) as client:
        yield client


def queued_job(queue: JobQueue, settings: Settings) -> str:
    return queue.submit(job_spec(settings.data_service_addr)).id


def messages(body: dict[str, Any]) -> list[str]:
    return [line["message"] for line in body["lines"]]


def work(settings: Settings, queue: JobQueue) -> None:
    """One real trainer worker, in this process, runs the next job to its end."""
    queue.ensure_group()
    assert Worker(settings.model_copy(update={"worker_name": "w"}), queue).work_one(block_ms=1000)


def follow(gateway: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Read the log as a follower would: page on with ``next`` until ``done``."""
    lines, after = [], 0
    while True:
        body = gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": after}).json()
        assert "skipped" not in body
        lines += body["lines"]
        after = body["next"]
        if body["done"]:
            return lines


def in_order(got: list[str], wanted: list[str]) -> bool:
    """Each pattern of ``wanted`` matches a line of ``got``, in that order."""
    lines = iter(got)
    return all(any(re.fullmatch(pattern, line) for line in lines) for pattern in wanted)


def test_a_tiny_jobs_log_from_a_real_trainer(gateway: httpx.Client, job_queue: JobQueue, settings):
    job_id = queued_job(job_queue, settings)
    assert gateway.get(f"/v1/jobs/{job_id}/logs").json() == {"lines": [], "next": 0, "done": False}
    follower: list[list[dict[str, Any]]] = []
    reading = threading.Thread(target=lambda: follower.append(follow(gateway, job_id)))
    reading.start()
    work(settings, job_queue)
    reading.join(timeout=30)

    body = gateway.get(f"/v1/jobs/{job_id}/logs").json()
    assert body["done"] is True and job_queue.get(job_id).status is JobStatus.succeeded
    assert follower == [body["lines"]]  # followed live: every line once, none missing
    assert [line["seq"] for line in body["lines"]] == list(range(1, len(body["lines"]) + 1))
    assert {line["level"] for line in body["lines"]} <= {"INFO", "WARNING"}
    got = messages(body)
    record = job_queue.get(job_id)
    loss = r"\d+\.\d{4}"
    assert in_order(
        got,
        [
            "preparing the data: module text, source tiny.txt",
            rf"dataset {record.dataset_id}: train [\d,]+ tokens, val [\d,]+ tokens; vocabulary of \d+ "
            r"\(char tokenizer\)",
            rf"step 0: val loss {loss}, train loss {loss}",
            r"training from step 0 to 12 on cpu x1: [\d,]+ parameters",
            rf"step 6: val loss {loss}, train loss {loss}",
            "checkpoint saved at step 6",
            rf"step 12: val loss {loss}, train loss {loss}",
            "checkpoint saved at step 12",
            f"verdict: {job_queue.report(job_id)['verdict']}: .+",
        ],
    ), got
    assert not any(str(settings.state_dir) in line or "tmp" in line for line in got)
    final = job_queue.metrics(job_id)[-1]
    assert any(line.startswith(f"step 12: val loss {final['val/loss']:.4f}, ") for line in got)


def test_a_failed_jobs_log_ends_with_its_error_in_the_users_words(
    gateway: httpx.Client, job_queue: JobQueue, settings
):
    spec = job_spec(settings.data_service_addr).model_dump(mode="json", exclude_none=True)
    spec["dataset"]["source"] = "missing.txt"
    job_id = job_queue.submit(JobSpec.model_validate(spec)).id
    work(settings, job_queue)

    error = job_queue.get(job_id).error
    assert error.startswith("prepare dataset: ") and "missing.txt" in error
    assert not re.search(r"\([A-Z_]+\)", error)  # no gRPC code name
    body = gateway.get(f"/v1/jobs/{job_id}/logs").json()
    assert body["done"] is True
    assert messages(body)[0] == "preparing the data: module text, source missing.txt"
    assert body["lines"][-1]["level"] == "ERROR" and body["lines"][-1]["message"].endswith(error)
    assert not any("answered" in m or str(settings.data_root) in m for m in messages(body))


def test_lines_name_no_server_folder_and_stay_with_their_job(job_queue: JobQueue, settings):
    mine, other = queued_job(job_queue, settings), queued_job(job_queue, settings)
    trainer = logging.getLogger("trainer_service.test")
    checkpoint = settings.jobs_dir / mine / "checkpoint.pt"
    with job_log(job_queue, mine, settings):
        trainer.info("%s is not a checkpoint", checkpoint)
        trainer.info("in %s and %s", settings.jobs_dir / mine, settings.state_dir.resolve() / "prepared")
        trainer.debug("not at debug")
        logging.getLogger("elsewhere").warning("not another library's lines")
        elsewhere = threading.Thread(target=lambda: trainer.warning("not a thread outside the job"))
        elsewhere.start()
        elsewhere.join()
        with job_log(job_queue, other, settings):
            trainer.info("the other job's line")
    trainer.info("not after the job")
    lines, _ = job_queue.logs(mine)
    assert [line["message"] for line in lines] == [
        "checkpoint.pt is not a checkpoint",
        "in the job's folder and prepared",
    ]
    assert [line["message"] for line in job_queue.logs(other)[0]] == ["the other job's line"]


def test_lines_page_with_after_and_times_are_utc(gateway: httpx.Client, job_queue: JobQueue, settings):
    job_id = queued_job(job_queue, settings)
    assert gateway.get(f"/v1/jobs/{job_id}/logs").json() == {"lines": [], "next": 0, "done": False}
    for i in range(5):
        job_queue.append_log(job_id, "INFO", f"line {i}", at=1_700_000_000.25 + i)

    first = gateway.get(f"/v1/jobs/{job_id}/logs").json()
    assert set(first) == {"lines", "next", "done"}
    assert messages(first) == [f"line {i}" for i in range(5)]
    assert [line["seq"] for line in first["lines"]] == [1, 2, 3, 4, 5] and first["next"] == 5
    assert first["lines"][0] == {
        "seq": 1,
        "time": "2023-11-14T22:13:20.250000Z",
        "level": "INFO",
        "message": "line 0",
    }
    assert datetime.fromisoformat(first["lines"][4]["time"]).timestamp() == 1_700_000_004.25

    page = gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": 3}).json()
    assert messages(page) == ["line 3", "line 4"] and page["next"] == 5
    job_queue.append_log(job_id, "WARNING", "line 5")
    page = gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": page["next"]}).json()
    assert [(line["seq"], line["level"]) for line in page["lines"]] == [(6, "WARNING")]
    assert gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": 6}).json()["lines"] == []


def test_done_once_the_job_finished(gateway: httpx.Client, job_queue: JobQueue, settings):
    job_id = queued_job(job_queue, settings)
    job_queue.start(job_id, "w1")
    assert gateway.get(f"/v1/jobs/{job_id}/logs").json()["done"] is False
    job_queue.finish(job_id, JobStatus.cancelled)
    assert gateway.get(f"/v1/jobs/{job_id}/logs").json()["done"] is True


def test_unknown_job_and_bad_after(gateway: httpx.Client, job_queue: JobQueue, settings):
    assert error_of(gateway.get(f"/v1/jobs/{'a' * 32}/logs"), 404)["code"] == "not_found"
    assert error_of(gateway.get("/v1/jobs/NOT-AN-ID/logs"), 404)["code"] == "not_found"
    job_id = queued_job(job_queue, settings)
    error = error_of(gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": -1}), 422)
    assert error["code"] == "validation_error" and "after" in error["message"]


def test_a_reader_behind_the_cap_is_told_how_many_lines_it_missed(
    gateway: httpx.Client, job_queue: JobQueue, settings
):
    job_id = queued_job(job_queue, settings)
    written = LOG_LINES + 30
    for i in range(written):
        job_queue.append_log(job_id, "INFO", f"line {i + 1}")
    assert job_queue.r.llen(f"{job_queue.prefix}job:{job_id}:logs") == LOG_LINES

    lines, next_after = job_queue.logs(job_id, 0)
    assert len(lines) == LOG_LINES and lines[0]["seq"] == 31 and next_after == written
    body = gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": 10}).json()
    assert body["skipped"] == 20 and body["lines"][0]["message"] == "line 31"
    caught_up = gateway.get(f"/v1/jobs/{job_id}/logs", params={"after": 40}).json()
    assert "skipped" not in caught_up and caught_up["lines"][0]["seq"] == 41


def test_the_log_goes_with_the_job_and_is_not_remade(gateway: httpx.Client, job_queue: JobQueue, settings):
    job_id = queued_job(job_queue, settings)
    job_queue.append_log(job_id, "INFO", "hello")
    job_queue.finish(job_id, JobStatus.succeeded)
    assert gateway.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not job_queue.r.exists(f"{job_queue.prefix}job:{job_id}:logs")
    assert job_queue.append_log(job_id, "INFO", "late") == 0  # a trainer still writing makes no orphan
    assert not job_queue.r.exists(f"{job_queue.prefix}job:{job_id}:logs")
    assert gateway.get(f"/v1/jobs/{job_id}/logs").status_code == 404


def test_client_job_logs(gateway: httpx.Client, job_queue: JobQueue, settings):
    job_id = queued_job(job_queue, settings)
    job_queue.append_log(job_id, "INFO", "one")
    job_queue.append_log(job_id, "INFO", "two")
    client = GatewayClient(str(gateway.base_url))
    try:
        assert messages(client.job_logs(job_id)) == ["one", "two"]
        assert messages(client.job_logs(job_id, after=1)) == ["two"]
        with pytest.raises(GatewayError) as missing:
            client.job_logs("b" * 32)
        assert missing.value.status == 404
    finally:
        client.close()
