"""The Redis job queue against a real Redis: records, the consumer group, leases, metrics."""

import hashlib
import threading
import time

import pytest

from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import IdempotencyConflict, JobQueue

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
    assert job_queue.get(job.id).verdict is None  # a report without a verdict (an old trainer's)


def test_the_record_keeps_the_reports_verdict_for_the_list(job_queue: JobQueue):
    old, job = job_queue.submit(SPEC), job_queue.submit(SPEC)
    assert "verdict" not in job_queue.r.hgetall(job_queue._job_key(old.id))  # as stored before the field
    job_queue.set_report(job.id, {"verdict": "not fit", "checks": []})
    assert job_queue.get(job.id).verdict == "not fit"
    assert {j.id: j.verdict for j in job_queue.list()[0]} == {job.id: "not fit", old.id: None}
    job_queue.set_report(job.id, {"verdict": "fit"})  # a later report replaces it
    assert job_queue.get(job.id).verdict == "fit"
    job_queue.set_report(job.id, {"verdict": ["not", "a", "string"]})
    assert job_queue.get(job.id).verdict is None


def test_a_report_for_a_deleted_job_does_not_remake_its_record(job_queue: JobQueue):
    job = job_queue.submit(SPEC)
    job_queue.finish(job.id, JobStatus.succeeded)
    job_queue.delete(job.id)
    job_queue.set_report(job.id, {"verdict": "fit"})
    assert job_queue.r.exists(job_queue._job_key(job.id)) == 0 and job_queue.get(job.id) is None


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


def test_submit_once_returns_the_first_job(job_queue: JobQueue):
    job, created = job_queue.submit_once(SPEC, "key-1")
    again, created_again = job_queue.submit_once(SPEC, "key-1")
    assert created and not created_again
    assert again.id == job.id
    assert job_queue.r.xlen(job_queue.stream) == 1
    assert job_queue.get(job.id).spec == SPEC
    other = JobSpec.model_validate({"dataset": {"module": "text", "source": "other.txt"}})
    with pytest.raises(IdempotencyConflict) as info:
        job_queue.submit_once(other, "key-1")
    assert info.value.job_id == job.id
    assert job_queue.r.ttl(f"{job_queue.prefix}idem:{hashlib.sha256(b'key-1').hexdigest()}") > 0


def test_submit_once_keys_expire(job_queue: JobQueue):
    job, _ = job_queue.submit_once(SPEC, "short", ttl_s=1)
    time.sleep(1.2)
    later, created = job_queue.submit_once(SPEC, "short", ttl_s=1)
    assert created and later.id != job.id


def ids(records) -> list[str]:
    return [r.id for r in records]


def test_list_newest_first_with_cursor(job_queue: JobQueue):
    jobs = [job_queue.submit(SPEC) for _ in range(7)]
    page, cursor = job_queue.list(limit=3)
    assert ids(page) == [j.id for j in jobs[::-1][:3]]
    page2, cursor2 = job_queue.list(limit=3, cursor=cursor)
    page3, cursor3 = job_queue.list(limit=3, cursor=cursor2)
    assert ids(page2) + ids(page3) == [j.id for j in jobs[::-1][3:]]
    assert cursor3 is None
    exact, end = job_queue.list(limit=7)
    assert len(exact) == 7 and end is None


def test_list_keeps_order_among_equal_timestamps(job_queue: JobQueue):
    jobs = [job_queue.submit(SPEC) for _ in range(5)]
    job_queue.r.zadd(job_queue.index, {j.id: 1000.0 for j in jobs})  # all created at the same instant
    seen, cursor = [], None
    while True:
        page, cursor = job_queue.list(limit=2, cursor=cursor)
        seen += ids(page)
        if cursor is None:
            break
    assert sorted(seen) == sorted(j.id for j in jobs) and len(seen) == 5


def test_list_by_status_scans_a_bounded_number(job_queue: JobQueue):
    jobs = [job_queue.submit(SPEC) for _ in range(6)]
    job_queue.finish(jobs[0].id, JobStatus.failed, "x")  # the oldest
    page, cursor = job_queue.list(status=JobStatus.failed, limit=5, scan=3)
    assert page == [] and cursor is not None  # looked at 3, none failed, more to look at
    page, cursor = job_queue.list(status=JobStatus.failed, limit=5, cursor=cursor, scan=3)
    assert ids(page) == [jobs[0].id] and cursor is None


def test_list_skips_jobs_deleted_meanwhile_and_refuses_junk_cursors(job_queue: JobQueue):
    jobs = [job_queue.submit(SPEC) for _ in range(3)]
    job_queue.r.delete(f"{job_queue.prefix}job:{jobs[1].id}")
    assert ids(job_queue.list()[0]) == [jobs[2].id, jobs[0].id]
    for junk in ("", "!!", "bm90IGEgY3Vyc29y", "aW5mIGFiYw"):
        with pytest.raises(ValueError):
            job_queue.list(cursor=junk or "=")


def test_delete_only_finished_jobs(job_queue: JobQueue):
    job = job_queue.submit(SPEC)
    job_queue.add_metrics(job.id, {"step": 1, "train/loss": 1.0})
    assert job_queue.delete(job.id) is JobStatus.queued
    assert job_queue.get(job.id) is not None
    job_queue.set_report(job.id, {"ok": True})
    job_queue.finish(job.id, JobStatus.succeeded)
    assert job_queue.delete(job.id) is JobStatus.succeeded
    assert job_queue.get(job.id) is None
    assert job_queue.metrics(job.id) == [] and job_queue.report(job.id) is None
    assert job_queue.r.zscore(job_queue.index, job.id) is None
    assert job_queue.delete(job.id) is None


def test_status_counts(job_queue: JobQueue):
    jobs = [job_queue.submit(SPEC) for _ in range(4)]
    job_queue.start(jobs[0].id, "w")
    job_queue.finish(jobs[1].id, JobStatus.cancelled)
    assert job_queue.status_counts() == {
        "queued": 2,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 1,
    }


def test_heartbeats_expire(job_queue: JobQueue):
    job_queue.heartbeat("w1", ttl_s=1, state="idle")
    job_queue.heartbeat("w2", ttl_s=30, state="busy")
    workers = job_queue.workers()
    assert set(workers) == {"w1", "w2"} and workers["w2"]["state"] == "busy"
    assert workers["w1"]["ts"] == pytest.approx(time.time(), abs=5)
    time.sleep(1.2)
    assert set(job_queue.workers()) == {"w2"}


def test_worker_writes_a_heartbeat(job_queue: JobQueue):
    from simtrain.settings import Settings
    from trainer_service.worker import Worker

    worker = Worker(Settings(worker_name="hb-test"), job_queue)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "hb-test" not in job_queue.workers():
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
        assert job_queue.workers()["hb-test"]["state"] == "idle"
        assert 0 < job_queue.r.ttl(f"{job_queue.prefix}worker:hb-test") <= 30
    finally:
        worker.stop()
        thread.join(timeout=10)
