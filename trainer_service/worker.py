"""The trainer worker: claims jobs from the Redis stream, runs them, records the outcome.

A job's stream message stays pending while the worker holds it; a background thread renews that
lease. If the worker dies, the lease runs out and another worker claims the job and resumes it from
its last checkpoint. Nothing a job's owner sends can crash the worker: every failure becomes the
job's ``error``.

Each claim begins a numbered attempt, and everything the worker writes for it goes through an
:class:`~simtrain.fencing.AttemptQueue`: once a newer attempt owns the job (this worker stalled past its
lease), every write is refused and the worker lets the job go.

A job of several processes on this host (``training.gpus`` > 1, or ``training.nproc`` > 1 on CPU) runs
under ``torchrun`` as a child (see ``launch.py``) while the worker keeps the lease. A job of several nodes
is not for one host: it waits, queued, for ``torchrun`` to be started on its nodes (deploy/k8s/multinode).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

import redis

from simtrain.fencing import AttemptQueue
from simtrain.jobs import JobRecord, JobStatus
from simtrain.limits import limit_errors
from simtrain.queue import JobQueue, LeaseLost, UnreadableRecord
from simtrain.settings import Settings
from trainer_service.job_log import job_log
from trainer_service.job_runner import JobRun
from trainer_service.launch import run_torchrun
from trainer_service.outcome import Outcome, record_outcome, run_to_outcome
from trainer_service.parallel import procs_per_node

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews an attempt's lease every third of the lease time until stopped.

    A renewal is fenced: once a newer attempt owns the job (this worker stalled past its lease and another
    claimed the job), it is refused, and ``on_lost`` is called so the run stops at its next step.
    """

    def __init__(self, queue: AttemptQueue, msg_id: str, consumer: str, on_lost: Callable[[], None]):
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(queue, msg_id, consumer, on_lost), name="lease", daemon=True
        )
        self._thread.start()

    def _run(self, queue: AttemptQueue, msg_id: str, consumer: str, on_lost: Callable[[], None]) -> None:
        while not self._stop.wait(queue.lease_ms / 3000):
            try:
                queue.renew(msg_id, consumer)
                queue.heartbeat(consumer, ttl_s=queue.lease_ms / 1000, state="busy")
            except LeaseLost as e:
                log.warning("%s", e)
                self.lost = True
                on_lost()
                return
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
        self._job_stop = threading.Event()  # set by stop(), or when the current attempt loses its lease

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
        log.info("worker %s stopped", self.name)

    def stop(self) -> None:
        """Stop after the current step: the job is checkpointed and handed back, the loop ends."""
        self.stopping.set()
        self._job_stop.set()

    def work_one(self, block_ms: int = 1000) -> bool:
        """Claim and run at most one job. Returns whether there was one."""
        claimed = self.queue.claim(self.name, block_ms=block_ms)
        if claimed is None:
            return False
        msg_id, job_id = claimed
        try:
            job = self.queue.get(job_id)
        except UnreadableRecord as e:  # one stored before a fix refused its spec, say: fail it, go on
            log.warning("failing job %s: %s", job_id, e)
            self.queue.fail_unreadable(job_id, str(e))
            self.queue.ack(msg_id)
            return True
        if job is None or job.status.finished:
            self.queue.ack(msg_id)  # a stale message: nothing left to do
            return True
        if job.spec.training.nodes > 1:
            self.queue.update(job_id, error=multinode_note(job.id, job.spec.training.nodes))
            self.queue.ack(msg_id)  # left queued, for the nodes' torchrun to take
            return True

        begun = self.queue.begin_attempt(job_id, self.name, self.settings.max_attempts)
        if begun.number is None:
            log.info("not running job %s: %s", job_id, begun.reason)
            self.queue.ack(msg_id)
            return True
        queue = AttemptQueue(self.queue, job_id, begun.number, self.settings.redis_outage_s)
        try:
            self._run_attempt(queue, msg_id, job.model_copy(update={"attempts": begun.number}))
        except LeaseLost as e:
            log.warning("%s; leaving the job to it", e)
        return True

    def _run_attempt(self, queue: AttemptQueue, msg_id: str, job: JobRecord) -> None:
        """Run one attempt at a job whose record it owns, and record how it ended (every write fenced)."""
        refused = limit_errors(job.spec, self.settings)
        if refused:
            queue.finish(job.id, JobStatus.failed, "refused: " + "; ".join(e.text() for e in refused))
            queue.ack(msg_id)
            return
        self._job_stop = threading.Event()
        if self.stopping.is_set():
            self._job_stop.set()
        job_stop = self._job_stop
        log.info("job %s attempt %d on %s", job.id, queue.attempt, self.name)
        lease = LeaseKeeper(queue, msg_id, self.name, on_lost=job_stop.set)
        if procs_per_node(job.spec.training) > 1:
            try:  # the ranks record the outcome themselves
                outcome = run_torchrun(job, self.settings, queue, self.name, job_stop)
            finally:
                lease.stop()
        else:
            try:
                with job_log(queue, job.id, self.settings):
                    outcome = run_to_outcome(
                        job.id, lambda: JobRun(job, self.settings, queue, job_stop.is_set).run()
                    )
            finally:
                lease.stop()
            if lease.lost and outcome.status != "lost":
                outcome = Outcome("lost", error="the lease was lost")
            record_outcome(queue, job.id, outcome)
        if outcome.status == "interrupted":
            queue.release(msg_id, self.name)  # another worker resumes it from the checkpoint
        elif outcome.status != "lost":
            queue.ack(msg_id)
        log.info("job %s %s%s", job.id, outcome.status, f": {outcome.error}" if outcome.error else "")


def multinode_note(job_id: str, nodes: int) -> str:
    return (
        f"waiting: this job asks for {nodes} nodes, and a trainer worker runs jobs on one host; start "
        f"`torchrun --nnodes={nodes} ... -m trainer_service.distributed --job-id {job_id}` on its nodes "
        "(deploy/k8s/multinode does)"
    )
