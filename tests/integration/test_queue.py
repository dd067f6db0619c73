"""The Redis job queue against a real Redis: records, the consumer group, leases, metrics."""

import time

from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import JobQueue

SPEC = JobSpec.model_validate({"dataset": {"module": "text", "source": "tiny.txt"}})


def test_submit_stores_a_queued_record(job_queue: JobQueue):
    job = job_queue.submit(SPEC)
    stored = job_queue.get(job.id)
    assert stored is not None
    assert stored.status == JobStatus.queued
    assert stored.spec == SPEC
    assert stored.progress.max_iters == 300
    assert job_queue.get("0" * 32) is None


def test_claim_update_ack(job_queue: JobQueue):
    job_queue.ensure_group()
    job = job_queue.submit(SPEC)
    msg_id, job_id = job_queue.claim("w1", block_ms=100)
    assert job_id == job.id
    assert job_queue.claim("w2", block_ms=100) is None  # held by w1, lease not expired
    assert job_queue.incr_attempts(job_id) == 1
    job_queue.update(job_id, status=JobStatus.running, worker="w1")
    job_queue.finish(job_id, JobStatus.failed, "boom")
    job_queue.ack(msg_id)
    record = job_queue.get(job_id)
    assert (record.status, record.error, record.worker, record.attempts) == (
        JobStatus.failed,
        "boom",
        "w1",
        1,
    )
    assert record.finished_at is not None
    assert job_queue.r.xpending(job_queue.stream, "trainers")["pending"] == 0


def test_expired_lease_is_claimed_by_another_worker(redis_url: str, key_prefix: str):
    queue = JobQueue.from_url(redis_url, prefix=key_prefix, lease_ms=200)
    queue.ensure_group()
    job = queue.submit(SPEC)
    msg_id, _ = queue.claim("dead-worker", block_ms=100)
    time.sleep(0.3)
    queue.renew(msg_id, "dead-worker")  # a renewal resets the lease
    assert queue.claim("other", block_ms=10) is None
    time.sleep(0.3)
    assert queue.claim("other", block_ms=10) == (msg_id, job.id)


def test_release_hands_the_job_back_at_once(job_queue: JobQueue):
    job_queue.ensure_group()
    job = job_queue.submit(SPEC)
    msg_id, _ = job_queue.claim("w1", block_ms=100)
    job_queue.release(msg_id, "w1")
    assert job_queue.claim("w2", block_ms=10) == (msg_id, job.id)


def test_metrics_and_report(job_queue: JobQueue):
    job = job_queue.submit(SPEC)
    job_queue.add_metrics(job.id, {"step": 10, "train/loss": 2.5})
    job_queue.add_metrics(job.id, {"step": 20, "train/loss": 2.0}, latest={"step": 20, "val/loss": 2.1})
    assert [m["step"] for m in job_queue.metrics(job.id)] == [10, 20]
    assert job_queue.metrics(job.id, since_step=15) == [{"step": 20.0, "train/loss": 2.0}]
    record = job_queue.get(job.id)
    assert record.progress.step == 20
    assert record.metrics == {"step": 20, "val/loss": 2.1}
    assert job_queue.report(job.id) is None
    job_queue.set_report(job.id, {"final": {"val_loss": 1.5}})
    assert job_queue.report(job.id) == {"final": {"val_loss": 1.5}}


def test_prefixes_isolate(redis_url: str, job_queue: JobQueue):
    other = JobQueue.from_url(redis_url, prefix=job_queue.prefix + "other:")
    job = job_queue.submit(SPEC)
    assert other.get(job.id) is None


def test_cancel_a_queued_job_at_once(job_queue: JobQueue):
    job_queue.ensure_group()
    job = job_queue.submit(SPEC)
    assert job_queue.request_cancel(job.id).status == JobStatus.cancelled
    msg_id, job_id = job_queue.claim("w1", block_ms=100)
    assert not job_queue.start(job_id, "w1")  # a worker that claims it anyway does not run it
    assert job_queue.get(job_id).status == JobStatus.cancelled


def test_cancel_a_running_job_asks_its_worker(job_queue: JobQueue):
    job_queue.ensure_group()
    job_queue.submit(SPEC)
    _, job_id = job_queue.claim("w1", block_ms=100)
    assert job_queue.start(job_id, "w1")
    assert not job_queue.cancel_requested(job_id)
    assert job_queue.request_cancel(job_id).status == JobStatus.running
    assert job_queue.cancel_requested(job_id)


def test_cancel_unknown_or_finished(job_queue: JobQueue):
    assert job_queue.request_cancel("0" * 32) is None
    job = job_queue.submit(SPEC)
    job_queue.finish(job.id, JobStatus.succeeded)
    assert job_queue.request_cancel(job.id).status == JobStatus.succeeded
