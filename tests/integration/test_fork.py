"""Forking a job through the real gateway, trained by a real worker on a real data service and Redis.

A fork from the checkpoint starts where its source ended (its loss at step 0 is the source's final loss),
one with fresh weights starts over; what the gateway can tell will not fit is refused up front, and what
only the trainer can tell fails the fork with the fields that differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch

from gateway.app import create_app
from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve
from tests.integration.trainer_support import final_weights, job_spec
from trainer_service.job_runner import JobInterrupted, JobRun
from trainer_service.worker import Worker


@pytest.fixture
def gateway(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    with serve(create_app(settings)) as client:
        yield client


def work(settings: Settings, queue: JobQueue) -> None:
    """One real trainer worker, in this process, runs the next job to its end."""
    queue.ensure_group()
    assert Worker(settings.model_copy(update={"worker_name": "w"}), queue).work_one(block_ms=1000)


def source_spec(settings: Settings) -> dict[str, Any]:
    spec = job_spec(settings.data_service_addr).model_dump(mode="json")
    return spec | {"name": "baseline", "tags": ["tiny", "fork-test"]}


def trained_source(gateway: httpx.Client, settings: Settings, queue: JobQueue) -> str:
    response = gateway.post("/v1/jobs", json=source_spec(settings))
    assert response.status_code == 202, response.text
    work(settings, queue)
    job = queue.get(response.json()["id"])
    assert job.status is JobStatus.succeeded, job.error
    return job.id


def fork(gateway: httpx.Client, job_id: str, **body: Any) -> httpx.Response:
    return gateway.post(f"/v1/jobs/{job_id}/fork", json=body)


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["name"] == name)


def test_fork_from_the_checkpoint_goes_on_from_the_source_weights(
    gateway: httpx.Client, settings: Settings, job_queue: JobQueue
) -> None:
    source_id = trained_source(gateway, settings, job_queue)
    source_report = job_queue.report(source_id)
    source_weights = final_weights(settings, source_id)

    changes = {"training": {"max_iters": 6, "learning_rate": 1e-3}, "name": "lower lr"}
    response = fork(gateway, source_id, changes=changes, init_from_checkpoint=True)
    assert response.status_code == 202, response.text
    fork_id = response.json()["id"]
    assert response.headers["location"] == f"/v1/jobs/{fork_id}"
    spec = job_queue.get(fork_id).spec
    assert (spec.init_from, spec.forked_from) == (source_id, source_id)
    assert spec.training.max_iters == 6 and spec.training.learning_rate == 1e-3
    assert spec.training.batch_size == 4 and spec.model.sizes() == (2, 2, 32)  # the rest is the source's
    assert spec.name == "lower lr" and spec.tags == ["tiny", "fork-test"]

    work(settings, job_queue)
    job = job_queue.get(fork_id)
    assert job.status is JobStatus.succeeded, job.error
    assert job.progress.step == 6  # max_iters counts the fork's own steps
    report = job_queue.report(fork_id)
    # Step 0 evaluates the source's final weights on the same fixed batches: the same loss.
    assert report["curve"]["val"][0] == [0, pytest.approx(source_report["final"]["val_loss"], rel=1e-5)]
    assert report["init_from"] == source_id
    assert check(report, "loss_at_init")["verdict"] == "skip"
    assert source_id in check(report, "loss_at_init")["reason"]
    lines = [line["message"] for line in job_queue.logs(fork_id)[0]]
    assert any(f"starts from job {source_id}'s checkpoint (its step 12)" in line for line in lines)
    # The source's checkpoint is left as it was; the fork wrote its own.
    assert all(torch.equal(v, final_weights(settings, source_id)[k]) for k, v in source_weights.items())
    assert not all(torch.equal(v, final_weights(settings, fork_id)[k]) for k, v in source_weights.items())


def test_fork_with_fresh_weights_starts_over(
    gateway: httpx.Client, settings: Settings, job_queue: JobQueue
) -> None:
    source_id = trained_source(gateway, settings, job_queue)
    response = fork(gateway, source_id, changes={"training": {"max_iters": 6}})
    assert response.status_code == 202, response.text
    spec = job_queue.get(response.json()["id"]).spec
    assert (spec.init_from, spec.forked_from) == (None, source_id)
    work(settings, job_queue)
    report = job_queue.report(response.json()["id"])
    # Fresh weights: the loss at step 0 is the untrained one, checked against ln(vocab) as any job's.
    assert report["curve"]["val"][0][1] > job_queue.report(source_id)["final"]["val_loss"] + 0.5
    assert check(report, "loss_at_init")["verdict"] == "pass"
    assert report["init_from"] is None


def test_fork_refusals_name_the_field(gateway: httpx.Client, settings: Settings, job_queue: JobQueue) -> None:
    source_id = trained_source(gateway, settings, job_queue)
    cases = [
        ({"changes": {"model": {"n_embd": 48}}, "init_from_checkpoint": True}, "changes.model.n_embd"),
        (
            {"changes": {"training": {"block_size": 16}}, "init_from_checkpoint": True},
            "changes.training.block_size",
        ),
        ({"changes": {"training": {"max_iters": 0}}}, "changes.training.max_iters"),
        ({"changes": {"bogus": 1}}, "changes.bogus"),
        ({"changes": {"tags": ["two words"]}}, "changes.tags.0"),
        ({"changes": {"init_from": source_id}}, "changes.init_from"),
        ({"changes": {"model": {"n_layer": 96, "n_embd": 12288, "n_head": 96}}}, "changes.model.n_embd"),
        ({"init_from_checkpoint": "yes"}, "init_from_checkpoint"),
        ({"changes": [1]}, "changes"),
        ({"other": 1}, "other"),
    ]
    for body, field in cases:
        error = error_of(gateway.post(f"/v1/jobs/{source_id}/fork", json=body), 422)
        assert field in [d["field"] for d in error["details"]], (body, error)
        assert field in error["message"]
    # A mismatch the gateway can tell is refused before the fork is queued.
    assert [j.id for j in job_queue.list()[0]] == [source_id]

    # The same model with other dropout rates loads the same weights: not refused.
    response = fork(gateway, source_id, changes={"model": {"attn_pdrop": 0.2}}, init_from_checkpoint=True)
    assert response.status_code == 202, response.text


def test_fork_of_a_job_without_a_checkpoint(gateway: httpx.Client, settings: Settings, job_queue: JobQueue):
    queued = gateway.post("/v1/jobs", json=source_spec(settings)).json()["id"]
    error = error_of(fork(gateway, queued, init_from_checkpoint=True), 409)
    assert error["code"] == "checkpoint_not_ready"
    assert f"job {queued} has no checkpoint" in error["message"] and "it is queued" in error["message"]
    # Without the checkpoint, any job forks: its spec, fresh weights.
    response = fork(gateway, queued, changes={"training": {"seed": 3}})
    assert response.status_code == 202, response.text
    assert job_queue.get(response.json()["id"]).spec.training.seed == 3

    assert error_of(fork(gateway, "ab" * 16), 404)["code"] == "not_found"
    assert error_of(fork(gateway, "NOT-AN-ID"), 404)["code"] == "not_found"


def test_submit_with_init_from_is_checked_as_a_fork(
    gateway: httpx.Client, settings: Settings, job_queue: JobQueue
) -> None:
    missing = source_spec(settings) | {"init_from": "ab" * 16}
    error = error_of(gateway.post("/v1/jobs", json=missing), 422)
    assert error["details"][0]["field"] == "init_from" and "no job with id" in error["message"]
    assert error_of(gateway.post("/v1/jobs", json=source_spec(settings) | {"init_from": "XY"}), 422)

    source_id = trained_source(gateway, settings, job_queue)
    wider = source_spec(settings) | {"init_from": source_id}
    wider["model"] = wider["model"] | {"n_layer": 3}
    error = error_of(gateway.post("/v1/jobs", json=wider), 422)
    assert error["details"][0]["field"] == "model.n_layer"
    assert "the checkpoint has n_layer 2, this job 3" in error["message"]


def test_the_trainer_fails_a_fork_its_model_does_not_fit(settings: Settings, job_queue: JobQueue) -> None:
    """What the gateway cannot tell (here: submitted straight to Redis, past its checks)."""
    source = job_queue.submit(job_spec(settings.data_service_addr))
    work(settings, job_queue)
    wider = job_spec(settings.data_service_addr).model_dump(mode="json")
    wider["model"]["n_embd"] = 48
    wider["training"]["block_size"] = 16
    fork_job = job_queue.submit(JobSpec.model_validate(wider | {"init_from": source.id}))
    work(settings, job_queue)
    job = job_queue.get(fork_job.id)
    assert job.status is JobStatus.failed
    assert f"does not fit job {source.id}'s checkpoint" in job.error
    assert "n_embd: 32 in the checkpoint, 48 here" in job.error
    assert "block_size: 32 in the checkpoint, 16 here" in job.error
    assert "n_layer" not in job.error

    gone = job_queue.submit(job_spec(settings.data_service_addr).model_copy(update={"init_from": "cd" * 16}))
    work(settings, job_queue)
    job = job_queue.get(gone.id)
    assert job.status is JobStatus.failed and f"job {'cd' * 16}'s checkpoint, and there is none" in job.error


def test_a_fork_resumes_from_its_own_checkpoint(settings: Settings, job_queue: JobQueue) -> None:
    """Once the fork has a checkpoint, a restart resumes it, bit for bit, instead of starting over."""
    source = job_queue.submit(job_spec(settings.data_service_addr))
    JobRun(source, settings, job_queue, lambda: False).run()
    fork_spec = job_spec(settings.data_service_addr, max_iters=8).model_copy(update={"init_from": source.id})

    straight = job_queue.submit(fork_spec)
    JobRun(straight, settings, job_queue, lambda: False).run()

    stopped = job_queue.submit(fork_spec)
    first = JobRun(stopped, settings, job_queue, lambda: first.trainer.iter_num + 1 >= 5)
    with pytest.raises(JobInterrupted):
        first.run()
    again = JobRun(stopped, settings, job_queue, lambda: False)
    again.run()
    assert [s for s, _ in again.curve["val"]] == [0, 6, 8]
    ours, theirs = final_weights(settings, straight.id), final_weights(settings, stopped.id)
    assert all(torch.equal(value, theirs[name]) for name, value in ours.items())
