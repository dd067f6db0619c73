"""The Redis side of jobs: a stream read by a consumer group, one hash per job, a metrics stream per job.

Keys (all under the configured prefix):
  ``jobs``                the jobs stream; each entry is ``{"id": <job id>}``
  ``job:<id>``            the job record, a hash of strings (``spec``/``metrics`` hold JSON)
  ``job:<id>:metrics``    the job's metrics stream, one entry per logged step
  ``job:<id>:report``     the job's report, JSON
The JSON and these names are the contract: any Redis client in any language can enqueue or work jobs.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from simtrain.jobs import JobRecord, JobSpec, JobStatus, Progress

GROUP = "trainers"

# Status changes that race with other clients are single Lua scripts, so Redis applies them atomically.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  return 'cancelled'
end
if status == 'running' then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return status
"""
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'error', '')
return 1
"""


class JobQueue:
    def __init__(self, client: redis.Redis, prefix: str = "simtrain:", lease_ms: int = 30_000):
        self.r = client
        self.prefix = prefix
        self.lease_ms = lease_ms
        self.stream = f"{prefix}jobs"

    @classmethod
    def from_url(cls, url: str, prefix: str = "simtrain:", lease_ms: int = 30_000) -> JobQueue:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, prefix, lease_ms)

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    # -- clients --------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        """Store a new job record and put the job on the stream."""
        job = JobRecord(
            id=uuid.uuid4().hex,
            status=JobStatus.queued,
            spec=spec,
            progress=Progress(step=0, max_iters=spec.training.max_iters),
        )
        pipe = self.r.pipeline()
        pipe.hset(self._job_key(job.id), mapping=_to_hash(job))
        pipe.xadd(self.stream, {"id": job.id})
        pipe.execute()
        return job

    def get(self, job_id: str) -> JobRecord | None:
        fields = self.r.hgetall(self._job_key(job_id))
        return _from_hash(fields) if fields else None

    def metrics(self, job_id: str, since_step: int = 0) -> list[dict[str, float]]:
        """Logged metrics of a job, in step order, from ``since_step`` on."""
        entries = self.r.xrange(f"{self._job_key(job_id)}:metrics")
        rows = [{k: float(v) for k, v in fields.items()} for _, fields in entries]
        return [row for row in rows if row.get("step", 0) >= since_step]

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job at once; ask a running job's worker to stop at its next step."""
        if self.r.eval(_CANCEL, 1, self._job_key(job_id), time.time()) is None:
            return None
        return self.get(job_id)

    def report(self, job_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"{self._job_key(job_id)}:report")
        return json.loads(raw) if raw else None

    # -- workers --------------------------------------------------------------------------------

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def claim(self, consumer: str, block_ms: int = 1000) -> tuple[str, str] | None:
        """Take the next job: first one abandoned by a dead worker (lease expired), else a new one.

        Returns ``(message_id, job_id)``; the message stays pending until :meth:`ack`.
        """
        _, claimed, _ = self.r.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=self.lease_ms, start_id="0-0", count=1
        )
        if not claimed:
            reply = self.r.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=1, block=block_ms)
            claimed = reply[0][1] if reply else []
        if not claimed:
            return None
        msg_id, fields = claimed[0]
        return msg_id, fields["id"]

    def start(self, job_id: str, consumer: str) -> bool:
        """Mark a claimed job running, unless it was cancelled or finished meanwhile."""
        return bool(self.r.eval(_START, 1, self._job_key(job_id), consumer, time.time()))

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(self._job_key(job_id), "cancel_requested") == "1"

    def renew(self, msg_id: str, consumer: str) -> None:
        """Reset the message's idle time: the worker's lease on the job."""
        self.r.xclaim(self.stream, GROUP, consumer, min_idle_time=0, message_ids=[msg_id], justid=True)

    def release(self, msg_id: str, consumer: str) -> None:
        """Give a job back unfinished: mark its lease expired so the next claim takes it at once."""
        self.r.xclaim(
            self.stream,
            GROUP,
            consumer,
            min_idle_time=0,
            message_ids=[msg_id],
            idle=self.lease_ms,
            justid=True,
        )

    def ack(self, msg_id: str) -> None:
        self.r.xack(self.stream, GROUP, msg_id)

    def update(self, job_id: str, **fields: Any) -> None:
        self.r.hset(self._job_key(job_id), mapping=_encode_fields(fields))

    def incr_attempts(self, job_id: str) -> int:
        return int(self.r.hincrby(self._job_key(job_id), "attempts", 1))

    def add_metrics(self, job_id: str, row: dict[str, float], latest: dict[str, float] | None = None) -> None:
        """Append one metrics row; the job record keeps ``latest`` (default: the row) for quick reads."""
        pipe = self.r.pipeline()
        pipe.xadd(f"{self._job_key(job_id)}:metrics", {k: repr(float(v)) for k, v in row.items()})
        mapping = {"metrics": json.dumps(latest or row), "step": int(row["step"])}
        pipe.hset(self._job_key(job_id), mapping=mapping)
        pipe.execute()

    def set_report(self, job_id: str, report: dict[str, Any]) -> None:
        self.r.set(f"{self._job_key(job_id)}:report", json.dumps(report))

    def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        self.update(job_id, status=status, error=error, finished_at=time.time())


def _encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in fields.items():
        if isinstance(v, dict):
            out[k] = json.dumps(v)
        elif v is None:
            out[k] = ""
        else:
            out[k] = str(v.value if isinstance(v, JobStatus) else v)
    return out


def _to_hash(job: JobRecord) -> dict[str, str]:
    return _encode_fields(
        {
            "id": job.id,
            "status": job.status,
            "spec": job.spec.model_dump_json(),
            "step": job.progress.step,
            "max_iters": job.progress.max_iters,
            "metrics": job.metrics,
            "error": job.error,
            "attempts": job.attempts,
            "worker": job.worker,
            "dataset_id": job.dataset_id,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        }
    )


def _from_hash(h: dict[str, str]) -> JobRecord:
    def opt(key: str) -> str | None:
        return h.get(key) or None

    return JobRecord(
        id=h["id"],
        status=JobStatus(h["status"]),
        spec=JobSpec.model_validate_json(h["spec"]),
        progress=Progress(step=int(h.get("step") or 0), max_iters=int(h["max_iters"])),
        metrics=json.loads(h.get("metrics") or "{}"),
        error=opt("error"),
        attempts=int(h.get("attempts") or 0),
        worker=opt("worker"),
        dataset_id=opt("dataset_id"),
        created_at=float(h["created_at"]),
        started_at=float(h["started_at"]) if opt("started_at") else None,
        finished_at=float(h["finished_at"]) if opt("finished_at") else None,
    )
