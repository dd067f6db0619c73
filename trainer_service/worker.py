"""The trainer worker: claims jobs from the Redis stream, runs them, records the outcome.

A job's stream message stays pending while the worker holds it; a background thread renews that
lease. If the worker dies, the lease runs out and another worker claims the job and resumes it from
its last checkpoint. Nothing a job's owner sends can crash the worker: every failure becomes the
job's ``error``.

A job of several processes on this host (``training.gpus`` > 1, or ``training.nproc`` > 1 on CPU) runs
under ``torchrun`` as a child (see ``launch.py``) while the worker keeps the lease. A job of several nodes
is not for one host: it waits, queued, for ``torchrun`` to be started on its nodes (deploy/k8s/multinode).
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
from trainer_service.job_runner import JobRun
from trainer_service.launch import run_torchrun
from trainer_service.outcome import record_outcome, run_to_outcome
from trainer_service.parallel import procs_per_node

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
                queue.heartbeat(consumer, ttl_s=queue.lease_ms / 1000, state="busy")
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
                self.queue.heartbeat(self.name, ttl_s=self.queue.lease_ms / 1000, state="idle")
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
        if job.spec.training.nodes > 1:
            self.queue.update(job_id, error=multinode_note(job.id, job.spec.training.nodes))
            self.queue.ack(msg_id)  # left queued, for the nodes' torchrun to take
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
        if procs_per_node(job.spec.training) > 1:
            try:  # the ranks record the outcome themselves
                outcome = run_torchrun(job, self.settings, self.queue, self.name, self.stopping)
            finally:
                lease.stop()
        else:
            outcome = run_to_outcome(
                job_id, lambda: JobRun(job, self.settings, self.queue, self.stopping.is_set).run()
            )
            lease.stop()
            record_outcome(self.queue, job_id, outcome)
        if outcome.status == "interrupted":
            self.queue.release(msg_id, self.name)  # another worker resumes it from the checkpoint
        else:
            self.queue.ack(msg_id)
        log.info("job %s %s%s", job_id, outcome.status, f": {outcome.error}" if outcome.error else "")
        return True


def multinode_note(job_id: str, nodes: int) -> str:
    return (
        f"waiting: this job asks for {nodes} nodes, and a trainer worker runs jobs on one host; start "
        f"`torchrun --nnodes={nodes} ... -m trainer_service.distributed --job-id {job_id}` on its nodes "
        "(deploy/k8s/multinode does)"
    )
