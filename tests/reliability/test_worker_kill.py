"""Workers killed, stopped and stalled mid-job, as real processes: the job still ends once, with the weights
of a run never interrupted.

- SIGKILL: no last step, no checkpoint, no hand-back. The lease runs out, another worker claims the job and
  resumes it from the last checkpoint.
- SIGTERM: the worker finishes its step, checkpoints, hands the job back and exits 0.
- SIGSTOP: the worker stalls past its lease; another finishes the job; when the stalled one wakes, every
  write it tries is refused, and the job, its metrics, report and checkpoint stay as the newer attempt left
  them.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Iterator

import pytest
import torch

from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import GROUP, JobQueue
from simtrain.settings import Settings
from tests.integration.trainer_support import DataService
from tests.reliability.support import (
    Workers,
    assert_same_weights,
    final_weights,
    logged_train_steps,
    long_spec,
    reference_weights,
    wait_finished,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.timeout(180)
ALL_STEPS = list(range(5, 301, 5))


@pytest.fixture(scope="module")
def reference(data_service: DataService, redis_url: str) -> Iterator[dict[str, torch.Tensor]]:
    prefix = f"simtrain-test:reference-{time.time_ns()}:"
    settings = data_service.settings.model_copy(update={"redis_url": redis_url, "key_prefix": prefix})
    queue = JobQueue.from_url(redis_url, prefix=prefix)
    yield reference_weights(settings, queue, spec(data_service))
    keys = list(queue.r.scan_iter(f"{prefix}*"))
    if keys:
        queue.r.delete(*keys)


@pytest.fixture
def queue(settings: Settings) -> Iterator[JobQueue]:
    queue = JobQueue.from_url(settings.redis_url, prefix=settings.key_prefix, lease_ms=1500)
    yield queue
    keys = list(queue.r.scan_iter(f"{settings.key_prefix}*"))
    if keys:
        queue.r.delete(*keys)


def spec(data_service: DataService) -> JobSpec:
    return long_spec(data_service.address)


def at_step(queue: JobQueue, job_id: str, step: int) -> bool:
    record = queue.get(job_id)
    assert record is not None and not record.status.finished, f"job ended before step {step}: {record}"
    return record.progress.step >= step


def test_sigkilled_worker_job_resumes_elsewhere_with_identical_weights(
    settings: Settings, data_service: DataService, queue: JobQueue, workers: Workers, reference
):
    first = workers.start("w1")
    job = queue.submit(spec(data_service))
    wait_until(lambda: at_step(queue, job.id, 60), 60, "step 60 (past the checkpoint at 50)")
    first.kill()
    killed_at = time.time()
    assert queue.get(job.id).status == JobStatus.running  # nobody said otherwise: the lease must tell

    workers.start("w2")
    record = wait_finished(queue, job.id, 90)
    assert record.status == JobStatus.succeeded, record.error + workers.logs()
    assert (record.attempts, record.worker) == (2, "w2")
    history = queue.attempt_history(job.id)
    assert [h["worker"] for h in history] == ["w1", "w2"]
    assert history[1]["started_at"] > killed_at  # never on two workers at once
    assert "resumes at step 50" in workers.by_name()["w2"].log()
    assert logged_train_steps(queue, job.id) == ALL_STEPS  # every step logged once: none lost, none twice
    assert_same_weights(final_weights(settings, job.id), reference)
    assert queue.r.xpending(queue.stream, GROUP)["pending"] == 0


def test_sigterm_checkpoints_hands_back_and_exits_0(
    settings: Settings, data_service: DataService, queue: JobQueue, workers: Workers, reference
):
    # A long lease: only the hand-back can let the next worker start at once.
    workers.env = worker_env(settings, lease_ms=60_000)
    first = workers.start("w1")
    job = queue.submit(spec(data_service))
    wait_until(lambda: at_step(queue, job.id, 30), 60, "step 30")
    assert first.stop() == 0, first.log()
    assert "worker w1 stopped" in first.log()

    record = queue.get(job.id)
    assert (record.status, record.worker) == (JobStatus.queued, None)
    saved = torch.load(settings.jobs_dir / job.id / "checkpoint.pt", weights_only=True)["step"]
    # The step it was at when told (after the last logged one), not the last evaluation's checkpoint (0).
    assert 30 <= record.progress.step <= saved < 300

    started = time.monotonic()
    workers.start("w2", wait=False)
    record = wait_finished(queue, job.id, 90)
    assert record.status == JobStatus.succeeded, record.error
    history = queue.attempt_history(job.id)
    assert [h["worker"] for h in history] == ["w1", "w2"]
    assert time.monotonic() - started < 30  # picked up at once, not after the 60 s lease
    assert f"resumes at step {saved}" in workers.by_name()["w2"].log()
    assert logged_train_steps(queue, job.id) == ALL_STEPS
    assert_same_weights(final_weights(settings, job.id), reference)


def test_a_stalled_worker_that_wakes_late_changes_nothing(
    settings: Settings, data_service: DataService, queue: JobQueue, workers: Workers, reference
):
    late = workers.start("w1")
    job = queue.submit(spec(data_service))
    wait_until(lambda: at_step(queue, job.id, 60), 60, "step 60")
    late.process.send_signal(signal.SIGSTOP)
    try:
        workers.start("w2")
        record = wait_finished(queue, job.id, 90)
        assert record.status == JobStatus.succeeded, record.error
        checkpoint = settings.jobs_dir / job.id / "checkpoint.pt"
        before = snapshot(queue, job.id, checkpoint)
    finally:
        late.process.send_signal(signal.SIGCONT)

    wait_until(lambda: "no longer owns the job" in late.log(), 30, "the late worker to notice")
    wait_until(lambda: f"job {job.id} lost" in late.log(), 30, "the late worker to give up the job")
    assert late.alive(), late.log()  # it lost the job, not its life: it goes back to claiming
    assert snapshot(queue, job.id, checkpoint) == before
    record = queue.get(job.id)
    assert (record.status, record.attempts, record.worker) == (JobStatus.succeeded, 2, "w2")
    assert logged_train_steps(queue, job.id) == ALL_STEPS
    assert_same_weights(final_weights(settings, job.id), reference)


def snapshot(queue: JobQueue, job_id: str, checkpoint) -> tuple:
    """Everything of a job a worker writes: record, metrics, report, checkpoint bytes, report file."""
    report_file = checkpoint.parent / "report.json"
    return (
        queue.r.hgetall(queue._job_key(job_id)),
        queue.r.xrange(f"{queue._job_key(job_id)}:metrics"),
        queue.report(job_id),
        hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        report_file.read_text(),
        queue.r.xpending(queue.stream, GROUP)["pending"],
    )
