"""``GET /v1/jobs/{id}``, the call clients poll, answered beneath the framework.

Most of a FastAPI request's cost is routing, dependency solving and re-validating the record, for a
record that rarely changes between two polls. This middleware reads the record's hash in one round trip
and answers with the JSON the route's own model renders, reused while the hash is unchanged, so a poll
never sees a stale record; a job that does not exist gets the route's own 404. Anything else (a malformed
id, HEAD) goes on to the route, which answers as documented. It sits inside the auth, CORS and timing
middleware, so they apply alike.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import REDIS_DOWN, redis_down
from gateway.jobs import JOB_ID, no_such_job
from simtrain.queue import decode_view, job_key


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
        body = decode_view(job_id, fields).model_dump_json().encode()
        if held is None and len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
        self._entries[job_id] = (fields, body)
        return body


class JobReads:
    """Serve ``GET /v1/jobs/{id}`` for an existing job from :class:`RenderedRecords`.

    ``route`` is the FastAPI route it stands in for: its path decides which requests are served here, and
    it goes into the scope, so the request is timed under that route's template like any other.
    """

    def __init__(self, app: ASGIApp, route: Route, prefix: str, records: RenderedRecords) -> None:
        self.app = app
        self.route = route
        self.prefix = prefix
        self.records = records

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_get = scope["type"] == "http" and scope["method"] == "GET"
        match = is_get and self.route.path_regex.match(scope["path"])
        # An id the route refuses without a read goes on to it for that 404.
        if not match or not JOB_ID.fullmatch(job_id := match["job_id"]):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            fields = await scope["app"].state.aredis.hgetall(job_key(self.prefix, job_id))
        except REDIS_DOWN as e:
            await redis_down(e)(scope, receive, send)
            return
        if not fields:
            await no_such_job(job_id).response()(scope, receive, send)
            return
        body = self.records.render(job_id, fields)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
