"""``GET /v1/jobs/{id}``, the call clients poll, answered beneath the framework.

Most of a FastAPI request's cost is routing, dependency solving and re-validating the record, for a
record that rarely changes between two polls. This middleware reads the record's hash in one round trip
and answers with the JSON the route's own model renders, reused while the hash is unchanged, so a poll
never sees a stale record. Anything else (no such job, a malformed id, HEAD) goes on to the route, which
answers as documented. It sits inside the auth, CORS and timing middleware, so they apply alike.
"""

from __future__ import annotations

import re

import redis
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import redis_down
from gateway.jobs import JOB_ID
from simtrain.queue import decode_record, job_key

# The ids the route accepts; others go on to it for their 404.
_PATH = re.compile(f"/v1/jobs/({JOB_ID.pattern})")


class RenderedRecords:
    """Job id → (the hash as read, its JSON), for at most ``size`` jobs: a new one pushes out the oldest."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: dict[str, tuple[dict[str, str], bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def render(self, job_id: str, fields: dict[str, str]) -> bytes:
        """The record as ``GET /v1/jobs/{id}`` serves it; rendered again whenever any field changed."""
        held = self._entries.get(job_id)
        if held is not None and held[0] == fields:
            return held[1]
        body = decode_record(fields).model_dump_json().encode()
        if held is None and len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
        self._entries[job_id] = (fields, body)
        return body


class JobReads:
    """Serve ``GET /v1/jobs/{id}`` for an existing job from :class:`RenderedRecords`.

    ``route`` is the FastAPI route it stands in for: it goes into the scope, so the request is timed
    under that route's template like any other.
    """

    def __init__(self, app: ASGIApp, route: BaseRoute, prefix: str, records: RenderedRecords) -> None:
        self.app = app
        self.route = route
        self.prefix = prefix
        self.records = records

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = scope["type"] == "http" and scope["method"] == "GET" and _PATH.fullmatch(scope["path"])
        if not match:
            await self.app(scope, receive, send)
            return
        job_id = match.group(1)
        try:
            fields = await scope["app"].state.aredis.hgetall(job_key(self.prefix, job_id))
        except (redis.ConnectionError, redis.TimeoutError) as e:
            await redis_down(e)(scope, receive, send)
            return
        if not fields:
            await self.app(scope, receive, send)
            return
        body = self.records.render(job_id, fields)
        scope["route"] = self.route
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
