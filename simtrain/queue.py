"""The Redis side of jobs: a stream read by a consumer group, one hash per job, a metrics stream per job.

Keys (all under the configured prefix):
  ``jobs``                the jobs stream; each entry is ``{"id": <job id>}``
  ``job:<id>``            the job record, a hash of strings (``spec``/``metrics`` hold JSON)
  ``job:<id>:metrics``    the job's metrics stream, one entry per logged step
  ``job:<id>:report``     the job's report, JSON
  ``job:<id>:logs``       the job's own log lines, a list of JSON ``{"seq", "time", "level", "message"}``,
                          the last ``LOG_LINES`` of them
  ``jobs:index``          a sorted set of job ids scored by creation time, for listing
  ``idem:<sha256>``       ``"<job id> <spec sha256>"`` for a submit's Idempotency-Key, with a TTL
  ``job:<id>:attempts``   one entry per attempt begun: ``attempt``, ``worker``, ``started_at``
  ``worker:<name>``       a trainer's heartbeat, JSON ``{"ts": ...}``, expiring when it stops
The JSON and these names are the contract: any Redis client in any language can enqueue or work jobs.

Fencing: the record's ``attempts`` counts attempts begun and is the fencing token. A worker writes for its
attempt through :class:`simtrain.fencing.AttemptQueue`, whose every write is a script that first checks the
record still holds its attempt number; a worker whose lease ran out and whose job another took is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from simtrain.jobs import JobRecord, JobSpec, JobStatus, JobView, Progress

GROUP = "trainers"
LOG_LINES = 1000  # a job's log keeps its last this many lines

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
_DELETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  redis.call('DEL', KEYS[1], KEYS[1] .. ':metrics', KEYS[1] .. ':report', KEYS[1] .. ':attempts',
    KEYS[1] .. ':logs')
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return status
"""
# KEYS: the job's hash, its log. ARGV: the line as JSON without its seq, the most lines kept.
# Numbers the line one past the last (from 1), so seqs stay contiguous across attempts and trims; a deleted
# job's log is not remade. Returns the seq, or 0 when the job is gone.
_APPEND_LOG = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = redis.call('LINDEX', KEYS[2], -1)
local seq = 1
if last then seq = tonumber(string.match(last, '^{"seq": (%d+),')) + 1 end
redis.call('RPUSH', KEYS[2], '{"seq": ' .. seq .. ', ' .. string.sub(ARGV[1], 2))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
return seq
"""
# KEYS: the job's log. ARGV: the seq a reader has. Returns the lines after it still kept, in one read.
_LOGS_AFTER = """
local first = redis.call('LINDEX', KEYS[1], 0)
if not first then return {} end
local start = tonumber(ARGV[1]) + 1 - tonumber(string.match(first, '^{"seq": (%d+),'))
return redis.call('LRANGE', KEYS[1], math.max(start, 0), -1)
"""
# KEYS: idempotency key, new job's hash, stream, index.
# ARGV: job id, spec digest, created_at, key TTL, job key prefix, then the hash's fields and values.
# Returns the job id and spec digest the key already holds (while that job exists), else stores the job.
_SUBMIT_ONCE = """
local held = redis.call('GET', KEYS[1])
if held then
  local id, digest = string.match(held, '^(%S+) (%S+)$')
  if id and redis.call('EXISTS', ARGV[5] .. id) == 1 then
    return {id, digest}
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[4])
return false
"""
# ARGV: error, now. Fails a job that has not finished; returns whether it did.
_FAIL_UNFINISHED = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[1], 'finished_at', ARGV[2])
return 1
"""
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'error', '')
return 1
"""


# KEYS: the job's hash, its attempts stream. ARGV: worker, now, max attempts.
# Begins the next attempt: counts it, refuses a finished job, ends one cancelled while its worker was gone,
# fails one out of attempts (with the reason; not counted, since none is made, so attempts stays at most
# max attempts). Returns {outcome, attempt number or status or reason}.
_BEGIN = """
local h = KEYS[1]
local status = redis.call('HGET', h, 'status')
if not status then return {'gone', ''} end
if status ~= 'queued' and status ~= 'running' then return {'finished', status} end
if redis.call('HGET', h, 'cancel_requested') == '1' then
  redis.call('HSET', h, 'status', 'cancelled', 'finished_at', ARGV[2])
  return {'finished', 'cancelled'}
end
local made = tonumber(redis.call('HGET', h, 'attempts') or '0') or 0
if made >= tonumber(ARGV[3]) then
  local reason = 'gave up after ' .. ARGV[3] .. ' attempts'
  local err = redis.call('HGET', h, 'error')
  local last = redis.call('HGET', h, 'worker')
  if err and err ~= '' then
    reason = reason .. '; last error: ' .. err
  elseif status == 'running' and last and last ~= '' then
    reason = reason .. '; the last, on worker ' .. last .. ', stopped without finishing (its lease expired)'
  end
  redis.call('HSET', h, 'status', 'failed', 'error', reason, 'finished_at', ARGV[2])
  return {'gave_up', reason}
end
local attempt = redis.call('HINCRBY', h, 'attempts', 1)
redis.call('HSET', h, 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'error', '')
redis.call('XADD', KEYS[2], '*', 'attempt', attempt, 'worker', ARGV[1], 'started_at', ARGV[2])
return {'run', tostring(attempt)}
"""
# Every write below starts with this check. KEYS[1]: the job's hash. ARGV[1]: the writer's attempt number
# (empty: an unfenced writer); ARGV[2]: '1' when the job must also be running. Refused: returns 0.
_FENCE = """
local held = redis.call('HMGET', KEYS[1], 'attempts', 'status')
if ARGV[1] ~= '' and held[1] ~= ARGV[1] then return 0 end
if ARGV[2] == '1' and held[2] ~= 'running' then return 0 end
"""
# ARGV[3..]: fields and values to set.
_SET = _FENCE + "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\nreturn 1"
# KEYS[2]: the metrics stream. ARGV[3]: latest metrics (JSON), ARGV[4]: step, ARGV[5..]: the row.
# A retried write (its reply lost with a broken connection) finds its row last and does not add it again.
_METRICS = (
    _FENCE
    + """
local row = {unpack(ARGV, 5)}
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
local same = last ~= nil and #last[2] == #row
if same then
  for i = 1, #row do
    if last[2][i] ~= row[i] then same = false; break end
  end
end
if not same then redis.call('XADD', KEYS[2], '*', unpack(row)) end
redis.call('HSET', KEYS[1], 'metrics', ARGV[3], 'step', ARGV[4])
return 1
"""
)
# KEYS[2]: the metrics stream. ARGV[3]: the step resumed from (-1: from scratch), ARGV[4]: latest metrics.
# Drops rows an earlier attempt logged after its last checkpoint: this attempt logs those steps again.
_REWIND = (
    _FENCE
    + """
local resume = tonumber(ARGV[3])
local done = false
while not done do
  local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 100)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local step = nil
    for i = 1, #entry[2], 2 do
      if entry[2][i] == 'step' then step = tonumber(entry[2][i + 1]) end
    end
    if step ~= nil and step <= resume then done = true; break end
    redis.call('XDEL', KEYS[2], entry[1])
  end
end
redis.call('HSET', KEYS[1], 'step', math.max(resume, 0), 'metrics', ARGV[4])
return 1
"""
)
# KEYS[2]: the report key. ARGV[3]: the report (JSON), ARGV[4]: its verdict ('' for none), kept on the
# record too, so a job list shows it without reading every report. A deleted job's record is not remade.
_REPORT = (
    _FENCE
    + """
redis.call('SET', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'verdict', ARGV[4]) end
return 1
"""
)
# KEYS[2]: the jobs stream. ARGV[3]: group, ARGV[4]: consumer, ARGV[5]: message id, ARGV[6]: its idle time.
_XCLAIM = (
    _FENCE
    + """
local claimed = redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'IDLE', ARGV[6], 'JUSTID')
return #claimed
"""
)
# KEYS[2]: the jobs stream. ARGV[3]: group, ARGV[4]: message id.
_ACK = _FENCE + "redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])\nreturn 1"
_OWNS = _FENCE + "return 1"


class JobQueue:
    def __init__(self, client: redis.Redis, prefix: str = "simtrain:", lease_ms: int = 30_000):
        self.r = client
        self.prefix = prefix
        self.lease_ms = lease_ms
        self.stream = f"{prefix}jobs"
        self.index = f"{prefix}jobs:index"

    @classmethod
    def from_url(cls, url: str, prefix: str = "simtrain:", lease_ms: int = 30_000) -> JobQueue:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, prefix, lease_ms)

    def _job_key(self, job_id: str) -> str:
        return job_key(self.prefix, job_id)

    # -- clients --------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        """Store a new job record and put the job on the stream."""
        job = _new_job(spec)
        pipe = self.r.pipeline()
        pipe.hset(self._job_key(job.id), mapping=_to_hash(job))
        pipe.xadd(self.stream, {"id": job.id})
        pipe.zadd(self.index, {job.id: job.created_at})
        pipe.execute()
        return job

    def submit_once(self, spec: JobSpec, key: str, ttl_s: int = 86_400) -> tuple[JobRecord, bool]:
        """Submit unless ``key`` already named a job within ``ttl_s``: then return that job, not a new one.

        Returns ``(job, created)``. Reusing a key with a different spec raises :class:`IdempotencyConflict`,
        since silently answering with a job that trains something else would be worse than an error.
        """
        job = _new_job(spec)
        digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
        key_hash = hashlib.sha256(key.encode()).hexdigest()
        fields = [x for pair in _to_hash(job).items() for x in pair]
        keys = [f"{self.prefix}idem:{key_hash}", self._job_key(job.id), self.stream, self.index]
        args = [job.id, digest, job.created_at, ttl_s, self._job_key(""), *fields]
        held = self.r.eval(_SUBMIT_ONCE, 4, *keys, *args)
        if not held:
            return job, True
        held_id, held_digest = held
        if held_digest != digest:
            raise IdempotencyConflict(held_id)
        existing = self.get(held_id)
        if existing is None:  # deleted between the script and this read
            raise IdempotencyConflict(held_id)
        return existing, False

    def list(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        scan: int = 1000,
        tags: Sequence[str] = (),
        name: str | None = None,
    ) -> tuple[list[JobView], str | None]:
        """Jobs newest first, optionally only those in ``status``, holding every one of ``tags``, and whose
        name contains ``name`` (case-insensitive); returns the page and the next cursor.

        A filtered page looks at no more than ``scan`` jobs, so it may come back short (even empty) with
        a cursor to go on from; the cursor is None only once the index is exhausted.
        """
        top, after = ("+inf", None) if cursor is None else _decode_cursor(cursor)
        page: list[JobView] = []
        last: tuple[float, str] | None = None
        seen = offset = 0
        while len(page) < limit and seen < scan:
            chunk = self.r.zrevrangebyscore(self.index, top, "-inf", start=offset, num=200, withscores=True)
            if not chunk:
                return page, None
            offset += len(chunk)
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in chunk:
                pipe.hgetall(self._job_key(job_id))
            for (job_id, score), fields in zip(chunk, pipe.execute(), strict=True):
                # Equal scores come in reverse member order: the cursor's and those before it were sent.
                if after is not None and score == float(top) and job_id >= after:
                    continue
                last, seen = (score, job_id), seen + 1
                view = decode_view(job_id, fields) if fields else None
                if view and _matches(view, status, tags, name):
                    page.append(view)
                if len(page) == limit or seen == scan:
                    break
        assert last is not None
        return page, (_encode_cursor(*last) if self._has_older(*last) else None)

    def _has_older(self, score: float, job_id: str) -> bool:
        if self.r.zcount(self.index, "-inf", f"({score!r}"):
            return True
        return any(member < job_id for member in self.r.zrangebyscore(self.index, score, score))

    def status_counts(self) -> dict[str, int]:
        """How many indexed jobs are in each status (every status present, zero or not)."""
        counts = {s.value: 0 for s in JobStatus}
        for start in range(0, self.r.zcard(self.index), 1000):
            pipe = self.r.pipeline(transaction=False)
            for job_id in self.r.zrange(self.index, start, start + 999):
                pipe.hget(self._job_key(job_id), "status")
            for status in pipe.execute():
                if status in counts:
                    counts[status] += 1
        return counts

    def delete(self, job_id: str) -> JobStatus | None:
        """Delete a finished job's record, metrics, report and log; return its status (None: no such job).

        A job that is not finished is left alone, and its status says why.
        """
        status = self.r.eval(_DELETE, 2, self._job_key(job_id), self.index, job_id)
        return JobStatus(status) if status else None

    def heartbeat(self, worker: str, ttl_s: float, **info: Any) -> None:
        """Say that ``worker`` is alive for the next ``ttl_s`` seconds."""
        value = json.dumps({"ts": time.time(), **info})
        self.r.set(f"{self.prefix}worker:{worker}", value, ex=max(1, math.ceil(ttl_s)))

    def workers(self) -> dict[str, dict[str, Any]]:
        """The live workers' last heartbeats, by worker name."""
        head = f"{self.prefix}worker:"
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in head) + "*"  # the prefix, literally
        names = list(self.r.scan_iter(match=pattern, count=500))
        values = self.r.mget(names) if names else []
        return {n.removeprefix(head): json.loads(v) for n, v in zip(names, values, strict=True) if v}

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record; :class:`UnreadableRecord` when it does not decode."""
        fields = self.r.hgetall(self._job_key(job_id))
        return decode_record(fields) if fields else None

    def metrics(self, job_id: str, since_step: int = 0) -> list[dict[str, float]]:
        """Logged metrics of a job, in step order, from ``since_step`` on."""
        entries = self.r.xrange(f"{self._job_key(job_id)}:metrics")
        rows = [{k: float(v) for k, v in fields.items()} for _, fields in entries]
        return [row for row in rows if row.get("step", 0) >= since_step]

    def logs(self, job_id: str, after: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The job's kept log lines numbered above ``after``, and the ``after`` to read on from.

        A reader further behind than :data:`LOG_LINES` finds the first line's seq above ``after + 1``.
        """
        raw = self.r.eval(_LOGS_AFTER, 1, f"{self._job_key(job_id)}:logs", after)
        lines = [json.loads(line) for line in raw]
        return lines, lines[-1]["seq"] if lines else after

    def request_cancel(self, job_id: str) -> JobView | None:
        """Cancel a queued job at once; ask a running job's worker to stop at its next step."""
        if self.r.eval(_CANCEL, 1, self._job_key(job_id), time.time()) is None:
            return None
        fields = self.r.hgetall(self._job_key(job_id))
        return decode_view(job_id, fields) if fields else None

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

    def fail_unreadable(self, job_id: str, error: str) -> bool:
        """Fail a job whose record does not decode, unless it finished; False when it had."""
        return bool(self.r.eval(_FAIL_UNFINISHED, 1, self._job_key(job_id), error, time.time()))

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

    def begin_attempt(self, job_id: str, worker: str, max_attempts: int) -> Attempt:
        """Count a new attempt at a claimed job and mark it running on ``worker``, in one atomic step.

        The attempt's number is its fencing token (see :class:`simtrain.fencing.AttemptQueue`). A job that
        finished meanwhile, was cancelled while its worker was gone, or has used up ``max_attempts`` is
        not run: ``Attempt.number`` is None and ``reason`` says why (a job out of attempts is failed).
        """
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:attempts"]
        outcome, detail = self.r.eval(_BEGIN, 2, *keys, worker, time.time(), max_attempts)
        if outcome == "run":
            return Attempt(job_id, int(detail), None)
        reasons = {
            "gone": f"job {job_id} no longer exists",
            "finished": f"job {job_id} is already {detail}",
            "gave_up": detail,
        }
        return Attempt(job_id, None, reasons[outcome])

    def attempt_history(self, job_id: str) -> list[dict[str, Any]]:
        """Every attempt begun at the job, oldest first: ``attempt``, ``worker``, ``started_at``."""
        entries = self.r.xrange(f"{self._job_key(job_id)}:attempts")
        return [
            {"attempt": int(f["attempt"]), "worker": f["worker"], "started_at": float(f["started_at"])}
            for _, f in entries
        ]

    def _fenced(self, script: str, keys: list[str], *args: Any, running: bool = True) -> bool:
        """Run a write script behind the fence; a queue bound to no attempt (this one) writes unfenced."""
        return bool(self.r.eval(script, len(keys), *keys, "", "1" if running else "0", *args))

    def fail_if_running(self, job_id: str, error: str) -> bool:
        """Mark a running job failed, atomically with the check; False when it was no longer running."""
        fields = ["status", JobStatus.failed.value, "error", error, "finished_at", time.time()]
        return self._fenced(_SET, [self._job_key(job_id)], *fields)

    def requeue(self, job_id: str) -> bool:
        """Put a running job back to ``queued`` (its worker stopped it with a checkpoint, to resume later)."""
        fields = ["status", JobStatus.queued.value, "worker", ""]
        return self._fenced(_SET, [self._job_key(job_id)], *fields)

    def rewind_metrics(self, job_id: str, step: int, latest: dict[str, float]) -> bool:
        """Drop the metrics rows after ``step`` (-1: all), which a run resuming at ``step`` logs again."""
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:metrics"]
        return self._fenced(_REWIND, keys, step, json.dumps(latest), running=False)

    def assert_owner(self, job_id: str) -> None:
        """Raise :class:`LeaseLost` unless the caller's attempt owns the job; unbound: nothing to check."""

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

    def append_log(self, job_id: str, level: str, message: str, at: float | None = None) -> int:
        """Add a line to the job's log, keeping the last :data:`LOG_LINES`; its seq (0: no such job)."""
        line = json.dumps({"time": time.time() if at is None else at, "level": level, "message": message})
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:logs"]
        return int(self.r.eval(_APPEND_LOG, 2, *keys, line, LOG_LINES))

    def set_report(self, job_id: str, report: dict[str, Any]) -> None:
        """Store the report, and its verdict on the job's record."""
        keys = [self._job_key(job_id), f"{self._job_key(job_id)}:report"]
        self._fenced(_REPORT, keys, json.dumps(report), verdict_of(report), running=False)

    def finish(self, job_id: str, status: JobStatus, error: str | None = None) -> None:
        self.update(job_id, status=status, error=error, finished_at=time.time())


@dataclass(frozen=True)
class Attempt:
    """The outcome of :meth:`JobQueue.begin_attempt`: an attempt number to run under, or why not."""

    job_id: str
    number: int | None
    reason: str | None


class LeaseLost(RuntimeError):
    """A write for an attempt was refused: a newer attempt owns the job, or the job is no longer running."""

    def __init__(self, job_id: str, attempt: int, what: str):
        super().__init__(
            f"job {job_id}: attempt {attempt} no longer owns the job (a newer attempt took it over, or it "
            f"finished); refused to {what}"
        )
        self.job_id = job_id
        self.attempt = attempt


class UnreadableRecord(ValueError):
    """A job's hash that does not decode: a spec stored before a fix refused it, or a corrupted field."""


class IdempotencyConflict(Exception):
    """An Idempotency-Key came back with a different job spec than the job it first made."""

    def __init__(self, job_id: str):
        super().__init__(f"this Idempotency-Key was already used for job {job_id} with a different spec")
        self.job_id = job_id


def _new_job(spec: JobSpec) -> JobRecord:
    return JobRecord(
        id=uuid.uuid4().hex,
        status=JobStatus.queued,
        spec=spec,
        progress=Progress(step=0, max_iters=spec.training.max_iters),
    )


def _matches(view: JobView, status: JobStatus | None, tags: Sequence[str], name: str | None) -> bool:
    """Whether a job passes the list's filters (a record whose spec does not read has no name or tags)."""
    if status is not None and view.status != status:
        return False
    if not tags and name is None:
        return True
    if view.spec is None or not set(tags) <= set(view.spec.tags):
        return False
    return name is None or name.casefold() in (view.spec.name or "").casefold()


def _encode_cursor(score: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r} {job_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    """A cursor back into (score bound, job id); ValueError when it is not one we made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, job_id = raw.split(" ")
        if not math.isfinite(float(score)) or not job_id.isalnum():
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor this server gave out") from None
    return score, job_id


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


def verdict_of(report: dict[str, Any]) -> str:
    """The report's verdict as the job record keeps it: '' when the report has none (an old trainer's)."""
    verdict = report.get("verdict")
    return verdict[:64] if isinstance(verdict, str) else ""


def job_key(prefix: str, job_id: str) -> str:
    """The Redis hash of a job's record, for readers with a client of their own (an asyncio one, say)."""
    return f"{prefix}job:{job_id}"


def decode_record(h: dict[str, str]) -> JobRecord:
    """A job record from its Redis hash (see :func:`job_key`); :class:`UnreadableRecord` if not one."""

    def opt(key: str) -> str | None:
        return h.get(key) or None

    try:
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
            verdict=opt("verdict"),
            created_at=float(h["created_at"]),
            started_at=float(h["started_at"]) if opt("started_at") else None,
            finished_at=float(h["finished_at"]) if opt("finished_at") else None,
        )
    except (KeyError, ValueError) as e:  # a ValidationError is a ValueError, as a JSONDecodeError is
        raise UnreadableRecord(f"the job record cannot be read: {_why(e)}") from None


def decode_view(job_id: str, h: dict[str, str]) -> JobView:
    """The job for readers: a record that does not decode is shown failed with the reason (spec null)."""
    try:
        return decode_record(h)
    except UnreadableRecord as e:
        reason = str(e)

    def number(key: str, kind: type[float] | type[int]) -> Any:
        try:
            value = kind(h[key])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None

    status = h.get("status", "")
    finished = status in {s.value for s in JobStatus if s.finished}
    return JobView(
        id=job_id,
        status=JobStatus(status) if finished else JobStatus.failed,
        spec=None,
        progress=Progress(step=number("step", int) or 0, max_iters=number("max_iters", int) or 0),
        error=h.get("error") or reason,
        attempts=number("attempts", int) or 0,
        worker=h.get("worker") or None,
        dataset_id=h.get("dataset_id") or None,
        verdict=h.get("verdict") or None,
        created_at=number("created_at", float) or 0.0,
        started_at=number("started_at", float),
        finished_at=number("finished_at", float),
    )


def _why(e: Exception) -> str:
    """A one-line reason a record does not decode."""
    if isinstance(e, KeyError):
        return f"it has no {e.args[0]!r} field"
    if isinstance(e, ValidationError):
        return "; ".join(f"{e.title} {'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:3])
    return str(e)
