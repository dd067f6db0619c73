"""Attempts and fencing against a real Redis: a late worker's writes are refused, attempts are counted.

Two workers are played by hand here: ``w1`` claims a job and begins attempt 1, then stalls past its lease;
``w2`` claims the job again and begins attempt 2. Whatever ``w1`` writes afterwards must change nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from simtrain.fencing import AttemptQueue
from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import GROUP, JobQueue, LeaseLost
from simtrain.settings import Settings
from trainer_service.worker import Worker

SPEC = JobSpec.model_validate({"dataset": {"module": "text", "source": "tiny.txt"}})
LEASE_MS = 150


@pytest.fixture
def queue(redis_url: str, key_prefix: str) -> Iterator[JobQueue]:
    queue = JobQueue.from_url(redis_url, prefix=key_prefix, lease_ms=LEASE_MS)
    queue.ensure_group()
    yield queue
    keys = list(queue.r.scan_iter(f"{key_prefix}*"))
    if keys:
        queue.r.delete(*keys)


def take_over(queue: JobQueue) -> tuple[str, str, AttemptQueue, AttemptQueue]:
    """A job begun by w1 (attempt 1), whose lease then ran out, claimed and begun again by w2 (attempt 2)."""
    job = queue.submit(SPEC)
    msg_id, _ = queue.claim("w1", block_ms=100)
    first = queue.begin_attempt(job.id, "w1", max_attempts=3)
    time.sleep(LEASE_MS / 1000 + 0.05)
    assert queue.claim("w2", block_ms=10) == (msg_id, job.id)
    second = queue.begin_attempt(job.id, "w2", max_attempts=3)
    assert (first.number, second.number) == (1, 2)
    return job.id, msg_id, AttemptQueue(queue, job.id, 1), AttemptQueue(queue, job.id, 2)


def test_attempts_are_counted_and_recorded(queue: JobQueue):
    job_id, _, _, _ = take_over(queue)
    record = queue.get(job_id)
    assert (record.status, record.attempts, record.worker) == (JobStatus.running, 2, "w2")
    history = queue.attempt_history(job_id)
    assert [(h["attempt"], h["worker"]) for h in history] == [(1, "w1"), (2, "w2")]
    assert history[0]["started_at"] < history[1]["started_at"]


def test_a_late_worker_cannot_overwrite_the_newer_attempt(queue: JobQueue):
    job_id, msg_id, late, owner = take_over(queue)
    owner.add_metrics(job_id, {"step": 10, "train/loss": 1.0})
    owner.set_report(job_id, {"by": "attempt 2", "verdict": "fit"})
    assert queue.get(job_id).verdict == "fit"
    before = (queue.r.hgetall(queue._job_key(job_id)), queue.metrics(job_id), queue.report(job_id))

    refused = [
        lambda: late.update(job_id, dataset_id="other"),
        lambda: late.add_metrics(job_id, {"step": 99, "train/loss": 9.0}),
        lambda: late.rewind_metrics(job_id, -1, {}),
        lambda: late.set_report(job_id, {"by": "attempt 1", "verdict": "not fit"}),
        lambda: late.finish(job_id, JobStatus.succeeded),
        lambda: late.requeue(job_id),
        lambda: late.assert_owner(job_id),
        lambda: late.renew(msg_id, "w1"),
        lambda: late.release(msg_id, "w1"),
        lambda: late.ack(msg_id),
    ]
    for write in refused:
        with pytest.raises(LeaseLost, match="attempt 1 no longer owns"):
            write()
    assert not late.fail_if_running(job_id, "late failure")

    after = (queue.r.hgetall(queue._job_key(job_id)), queue.metrics(job_id), queue.report(job_id))
    assert after == before
    pending = queue.r.xpending_range(queue.stream, GROUP, "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(msg_id, "w2")]

    # The owner's writes go through, and it ends the job exactly once.
    owner.finish(job_id, JobStatus.succeeded)
    owner.ack(msg_id)
    with pytest.raises(LeaseLost):
        owner.finish(job_id, JobStatus.failed, "a second ending")
    assert queue.get(job_id).status == JobStatus.succeeded
    assert queue.r.xpending(queue.stream, GROUP)["pending"] == 0


def test_a_finished_job_is_not_begun_again(queue: JobQueue):
    job = queue.submit(SPEC)
    queue.claim("w1", block_ms=100)
    attempt = AttemptQueue(queue, job.id, queue.begin_attempt(job.id, "w1", 3).number)
    attempt.finish(job.id, JobStatus.succeeded)
    again = queue.begin_attempt(job.id, "w2", 3)
    assert again.number is None and again.reason == f"job {job.id} is already succeeded"
    assert queue.get(job.id).attempts == 1


def test_a_job_cancelled_while_its_worker_was_gone_ends_cancelled(queue: JobQueue):
    job = queue.submit(SPEC)
    queue.claim("w1", block_ms=100)
    queue.begin_attempt(job.id, "w1", 3)
    queue.request_cancel(job.id)  # running: only a request, and w1 then dies without seeing it
    begun = queue.begin_attempt(job.id, "w2", 3)
    assert begun.number is None and "cancelled" in begun.reason
    assert queue.get(job.id).status == JobStatus.cancelled


def test_the_worker_fails_a_job_out_of_attempts_with_the_reason(queue: JobQueue):
    job = queue.submit(SPEC)
    for dead in ("dead-1", "dead-2"):  # two workers claim the job, begin, and die (never renew)
        assert queue.claim(dead, block_ms=100) is not None
        assert queue.begin_attempt(job.id, dead, max_attempts=2).number is not None
        time.sleep(LEASE_MS / 1000 + 0.05)
    worker = Worker(Settings(worker_name="w3", max_attempts=2), queue)
    assert worker.work_one(block_ms=100)
    record = queue.get(job.id)
    assert record.status == JobStatus.failed
    assert record.error == (
        "gave up after 2 attempts; the last, on worker dead-2, stopped without finishing (its lease expired)"
    )
    assert record.attempts == len(queue.attempt_history(job.id)) == 2  # the attempts made, not one more
    assert queue.r.xpending(queue.stream, GROUP)["pending"] == 0


def test_a_retried_metrics_write_is_logged_once_and_a_rewind_drops_later_rows(queue: JobQueue):
    job = queue.submit(SPEC)
    queue.claim("w1", block_ms=100)
    attempt = AttemptQueue(queue, job.id, queue.begin_attempt(job.id, "w1", 3).number)
    for step in (0, 5, 10, 10, 15):  # 10 twice: a write whose reply was lost, sent again
        attempt.add_metrics(job.id, {"step": step, "train/loss": 1.0})
    attempt.add_metrics(job.id, {"step": 10, "val/loss": 2.0})  # another row at the same step is kept
    assert [(r["step"], "val/loss" in r) for r in queue.metrics(job.id)] == [
        (0, False),
        (5, False),
        (10, False),
        (15, False),
        (10, True),
    ]
    attempt.rewind_metrics(job.id, 5, {"step": 5})
    assert [r["step"] for r in queue.metrics(job.id)] == [0, 5]
    assert queue.get(job.id).progress.step == 5
