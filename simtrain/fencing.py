"""A job queue bound to one attempt at one job: every write is fenced, and rides out short Redis outages.

A worker that stalls (a long pause, a partition) can outlive its lease: another worker then claims the job
and begins a newer attempt. When the stalled one wakes it must not overwrite the newer attempt's progress,
report or status, nor ack or release the job's message. So each write goes through a Lua script that first
checks the record's ``attempts`` still equals this attempt's number, and is refused (:class:`LeaseLost`)
otherwise. Reads are as on :class:`JobQueue`.

While Redis is unreachable (restarting, failing over), writes are retried with backoff for up to
``outage_s``, so a job in flight pauses at its next write instead of failing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from simtrain.jobs import JobStatus
from simtrain.queue import (
    _ACK,
    _METRICS,
    _OWNS,
    _REPORT,
    _REWIND,
    _SET,
    _XCLAIM,
    GROUP,
    JobQueue,
    LeaseLost,
    _encode_fields,
    verdict_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that mean "Redis is not there right now" (a restart, a failover, a dataset still loading).
OUTAGE = (redis.ConnectionError, redis.TimeoutError)


class AttemptQueue(JobQueue):
    """The queue as attempt ``attempt`` at job ``job_id`` sees it: its writes are refused once it is stale."""

    def __init__(self, queue: JobQueue, job_id: str, attempt: int, outage_s: float = 60.0):
        super().__init__(queue.r, queue.prefix, queue.lease_ms)
        self.job_id = job_id
        self.attempt = attempt
        self.outage_s = outage_s

    # -- plumbing ---------------------------------------------------------------------------------

    def _check_job(self, job_id: str) -> None:
        if job_id != self.job_id:
            raise ValueError(f"this queue is bound to job {self.job_id}, not {job_id}")

    def _through_outage(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried with backoff while Redis is unreachable, for up to ``outage_s``."""
        deadline = time.monotonic() + self.outage_s
        delay = 0.1
        while True:
            try:
                return call()
            except OUTAGE as e:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "job %s: redis unavailable to %s (%s); retry in %.1fs", self.job_id, what, e, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _fenced(self, script: str, keys: list[str], *args: Any, running: bool = True) -> bool:
        """Run a write script behind this attempt's fence; raise :class:`LeaseLost` when it is refused."""
        token, need = str(self.attempt), "1" if running else "0"
        what = script_names.get(script, "write")
        done = self._through_outage(what, lambda: self.r.eval(script, len(keys), *keys, token, need, *args))
        if not done:
            raise LeaseLost(self.job_id, self.attempt, what)
        return True

    # -- the job record -------------------------------------------------------------------------------

    def update(self, job_id: str, **fields: Any) -> None:
        self._check_job(job_id)
        pairs = [x for pair in _encode_fields(fields).items() for x in pair]
        self._fenced(_SET, [self._job_key(job_id)], *pairs)

    def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        """End the running job, once: a finished job, or one a newer attempt owns, is refused."""
        self.update(job_id, status=status, error=error, finished_at=time.time())

    def fail_if_running(self, job_id: str, error: str) -> bool:
        try:
            self.finish(job_id, JobStatus.failed, error)
        except LeaseLost:
            return False  # finished already (another rank's failure came first), or no longer ours
        return True

    def requeue(self, job_id: str) -> bool:
        self.update(job_id, status=JobStatus.queued, worker=None)
        return True

    def add_metrics(self, job_id: str, row: dict[str, float], latest: dict[str, float] | None = None) -> None:
        self._check_job(job_id)
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:metrics"]
        fields = [x for k, v in row.items() for x in (k, repr(float(v)))]
        self._fenced(_METRICS, keys, json.dumps(latest or row), int(row["step"]), *fields)

    def rewind_metrics(self, job_id: str, step: int, latest: dict[str, float]) -> bool:
        self._check_job(job_id)
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:metrics"]
        return self._fenced(_REWIND, keys, step, json.dumps(latest))

    def set_report(self, job_id: str, report: dict[str, Any]) -> None:
        self._check_job(job_id)
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:report"]
        self._fenced(_REPORT, keys, json.dumps(report), verdict_of(report))

    def assert_owner(self, job_id: str) -> None:
        """Raise :class:`LeaseLost` unless this attempt runs the job (checked before a file is replaced)."""
        self._check_job(job_id)
        self._fenced(_OWNS, [self._job_key(job_id)])

    # -- the job's message --------------------------------------------------------------------------

    def renew(self, msg_id: str, consumer: str) -> None:
        """Reset the message's idle time (the lease), unless a newer attempt owns the job. Not retried: the
        lease keeper calls again soon."""
        keys = [self._job_key(self.job_id), self.stream]
        if not self.r.eval(_XCLAIM, 2, *keys, str(self.attempt), "0", GROUP, consumer, msg_id, 0):
            raise LeaseLost(self.job_id, self.attempt, "renew its lease")

    def release(self, msg_id: str, consumer: str) -> None:
        """Hand the job back unfinished: its lease is made expired, so the next claim takes it at once."""
        keys = [self._job_key(self.job_id), self.stream]
        self._fenced(_XCLAIM, keys, GROUP, consumer, msg_id, self.lease_ms, running=False)

    def ack(self, msg_id: str) -> None:
        """Acknowledge the job's message, unless a newer attempt owns the job."""
        self._fenced(_ACK, [self._job_key(self.job_id), self.stream], GROUP, msg_id, running=False)


script_names = {
    _SET: "update the job record",
    _METRICS: "log metrics",
    _REWIND: "rewind the metrics",
    _REPORT: "store the report",
    _OWNS: "replace a file of the job",
    _XCLAIM: "release the job",
    _ACK: "acknowledge the job",
}
