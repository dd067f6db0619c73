"""The trainer worker: claims jobs from the Redis stream, runs them, records the outcome.

A job's stream message stays pending while the worker holds it; a background thread renews that
lease. If the worker dies, the lease runs out and another worker claims the job and resumes it from
its last checkpoint. Nothing a job's owner sends can crash the worker: every failure becomes the
job's ``error``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

import redis

from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from trainer_service.data_client import DataServiceError
from trainer_service.job_runner import JobCancelled, JobInterrupted, JobRun

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews a job's lease every third of the lease time until stopped."""

    def __init__(self, queue: JobQueue, msg_id: str, consumer: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(queue, msg_id, consumer), name="lease", daemon=True
        )
        self._thread.start()

    def _run(self, queue: JobQueue, msg_id: str, consumer: str) -> None:
        while not self._stop.wait(queue.lease_ms / 3000):
            try:
                queue.renew(msg_id, consumer)
            except redis.RedisError as e:
                log.warning("could not renew lease on %s: %s", msg_id, e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    def __init__(self, settings: Settings, queue: JobQueue | None = None):
        self.settings = settings
        self.queue = queue or JobQueue.from_url(settings.redis_url, settings.key_prefix, settings.lease_ms)
        self.name = settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.stopping = threading.Event()

    def run_forever(self) -> None:
        """Work jobs until :meth:`stop`; survive Redis outages by waiting and reconnecting."""
        log.info("worker %s ready", self.name)
        while not self.stopping.is_set():
            try:
                self.queue.ensure_group()
                self.work_one(block_ms=1000)
            except redis.RedisError as e:
                log.warning("redis unavailable (%s); retrying", e)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()

    def work_one(self, block_ms: int = 1000) -> bool:
        """Claim and run at most one job. Returns whether there was one."""
        claimed = self.queue.claim(self.name, block_ms=block_ms)
        if claimed is None:
            return False
        msg_id, job_id = claimed
        job = self.queue.get(job_id)
        if job is None or job.status.finished:
            self.queue.ack(msg_id)  # a stale message: nothing left to do
            return True

        attempts = self.queue.incr_attempts(job_id)
        if attempts > self.settings.max_attempts:
            reason = f"gave up after {self.settings.max_attempts} attempts"
            if job.error:
                reason += f"; last error: {job.error}"
            self.queue.finish(job_id, JobStatus.failed, reason)
            self.queue.ack(msg_id)
            return True

        if not self.queue.start(job_id, self.name):
            self.queue.ack(msg_id)  # cancelled while it waited
            return True
        lease = LeaseKeeper(self.queue, msg_id, self.name)
        try:
            report = JobRun(job, self.settings, self.queue, self.stopping.is_set).run()
        except JobCancelled as e:
            lease.stop()
            self.queue.finish(job_id, JobStatus.cancelled, None)
            self.queue.ack(msg_id)
            log.info("job %s cancelled: %s", job_id, e)
            return True
        except JobInterrupted as e:
            lease.stop()
            log.info("job %s interrupted: %s", job_id, e)
            self.queue.update(job_id, status=JobStatus.queued, worker=None)
            self.queue.release(msg_id, self.name)
            return True
        except DataServiceError as e:
            self._fail(job_id, msg_id, lease, str(e))
            return True
        except Exception as e:  # a job must fail with a reason, never take the worker down
            log.exception("job %s failed", job_id)
            self._fail(job_id, msg_id, lease, f"{type(e).__name__}: {e}")
            return True
        lease.stop()
        self.queue.set_report(job_id, report)
        self.queue.finish(job_id, JobStatus.succeeded)
        self.queue.ack(msg_id)
        log.info("job %s succeeded: val loss %.4f", job_id, report["final"]["val_loss"])
        return True

    def _fail(self, job_id: str, msg_id: str, lease: LeaseKeeper, error: str) -> None:
        lease.stop()
        self.queue.finish(job_id, JobStatus.failed, error)
        self.queue.ack(msg_id)
        log.info("job %s failed: %s", job_id, error)
