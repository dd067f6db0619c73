"""Live job events as Server-Sent Events: status changes and metrics rows as the trainer writes them.

The stream blocks on the job's metrics stream (``XREAD BLOCK``), so a new row goes out at once, and
re-reads the record between blocks to catch status changes. Metrics events carry the Redis entry id as
their SSE ``id``: a client that reconnects with ``Last-Event-ID`` gets only the rows it missed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway import examples
from gateway.errors import error_doc
from gateway.jobs import existing_job
from simtrain.jobs import JobStatus, JobView
from simtrain.queue import decode_view, job_key

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

BLOCK_MS = 1000
_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")

DESCRIPTION = """\
A `text/event-stream` of the job's life, until it finishes:

- `status`: the job record (as `GET /v1/jobs/{id}`), first at once, then on every status change;
- `metrics`: one logged metrics row (as in `GET /v1/jobs/{id}/metrics`), with the row's stream id as
  the event `id`; reconnecting with `Last-Event-ID` resumes after it;
- `end`: the final record; the server then closes the stream;
- `error`: the job store became unreachable; the server closes the stream.
"""


def _row(fields: dict[str, str]) -> dict[str, float]:
    return {k: float(v) for k, v in fields.items()}


async def _job_events(
    r: aioredis.Redis, prefix: str, job_id: str, after: str
) -> AsyncIterator[ServerSentEvent]:
    record_key = job_key(prefix, job_id)
    metrics_key = f"{record_key}:metrics"
    last_status = None
    block: int | None = None  # the first read does not wait
    while True:
        reply = await r.xread({metrics_key: after}, count=500, block=block)
        for _, entries in reply:
            for entry_id, fields in entries:
                after = entry_id
                yield ServerSentEvent(event="metrics", id=entry_id, data=_row(fields))
        raw = await r.hgetall(record_key)
        if not raw:
            yield ServerSentEvent(event="end", data={"id": job_id, "status": "deleted"})
            return
        record = _record(job_id, raw)
        if record["status"] != last_status:
            last_status = record["status"]
            yield ServerSentEvent(event="status", data=record)
        if JobStatus(last_status).finished:
            # Rows written just before the status changed are already in the stream: send them first.
            for _, entries in await r.xread({metrics_key: after}, count=10_000):
                for entry_id, fields in entries:
                    yield ServerSentEvent(event="metrics", id=entry_id, data=_row(fields))
            yield ServerSentEvent(event="end", data=record)
            return
        block = BLOCK_MS


def _record(job_id: str, raw: dict[str, str]) -> dict[str, Any]:
    """The record as ``GET /v1/jobs/{id}`` shows it."""
    return json.loads(decode_view(job_id, raw).model_dump_json())


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    summary="Live events: status changes and metrics, as Server-Sent Events",
    description=DESCRIPTION,
    responses={
        200: {"content": {"text/event-stream": {"example": examples.EVENTS}}},
        404: error_doc("No such job (or not a job id)"),
    },
)
async def job_events(
    job: Annotated[JobView, Depends(existing_job)],
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> AsyncIterator[ServerSentEvent]:
    after = last_event_id if last_event_id and _STREAM_ID.fullmatch(last_event_id) else "0-0"
    prefix = request.app.state.settings.key_prefix
    try:
        async for event in _job_events(request.app.state.aredis, prefix, job.id, after):
            yield event
    except redis.RedisError as e:
        log.warning("events for job %s: redis unavailable: %s", job.id, type(e).__name__)
        yield ServerSentEvent(event="error", data={"code": "dependency_unavailable", "message": str(e)})
