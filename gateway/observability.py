"""Prometheus ``/metrics``: request latency, jobs by status, queue depth, trainer heartbeats.

Job and trainer figures are read from Redis at scrape time, so every gateway replica reports the same
numbers and nothing drifts; request latency is per gateway process. Each app has its own registry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import TextIO

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simtrain.queue import JobQueue

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The metric objects of one app."""

    def __init__(self, queue: JobQueue) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "simtrain_http_request_duration_seconds",
            "Time from request to response headers, by route template",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.submitted = Counter(
            "simtrain_jobs_submitted", "Jobs accepted by this gateway", registry=self.registry
        )
        self.registry.register(QueueCollector(queue))


class QueueCollector(Collector):
    """Reads job states and trainer heartbeats from Redis when scraped."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("simtrain_redis_up", "1 when the job store answered this scrape")
        try:
            counts = self.queue.status_counts()
            workers = self.queue.workers()
        except redis.RedisError as e:
            log.warning("metrics scrape: redis unavailable: %s", type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("simtrain_jobs", "Jobs by status", labels=["status"])
        for status, n in counts.items():
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily(
            "simtrain_queue_depth", "Jobs waiting for a trainer (status queued)", value=counts["queued"]
        )
        yield GaugeMetricFamily("simtrain_trainers", "Trainers with a live heartbeat", value=len(workers))
        seen = GaugeMetricFamily(
            "simtrain_trainer_heartbeat_timestamp_seconds",
            "When each live trainer last said it was alive (Unix time)",
            labels=["worker"],
        )
        busy = GaugeMetricFamily("simtrain_trainer_busy", "1 while a trainer runs a job", labels=["worker"])
        for name, beat in sorted(workers.items()):
            seen.add_metric([name], float(beat.get("ts", 0)))
            busy.add_metric([name], 1.0 if beat.get("state") == "busy" else 0.0)
        yield seen
        yield busy


# Query parameters whose values are credentials (``?token=`` from a browser's event stream, say).
SENSITIVE = re.compile(r"token|key|secret|passw|auth|credential|signature|session", re.IGNORECASE)


def masked_query(query: str) -> str:
    """``query`` with the value of every parameter named like a credential replaced by ``***``."""
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and value and SENSITIVE.search(urllib.parse.unquote_plus(name)):
            value = "***"
        parts.append(name + eq + value)
    return "&".join(parts)


class AccessLog:
    """One line per request (client, method, path, status, time to headers), as uvicorn's access log has.

    uvicorn's log makes a log record and writes and flushes it for every request: under load that was a
    third of the gateway's CPU. These lines are gathered and written once per turn of the event loop.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines: list[str] = []

    def request(self, scope: Scope, status: int, seconds: float) -> None:
        host, port = scope.get("client") or ("-", 0)
        # Quoted, the query too (its escapes kept): no request can forge a line or a field of its own.
        path = urllib.parse.quote(scope["path"])
        if scope["query_string"]:
            query = masked_query(scope["query_string"].decode("latin-1"))
            path += "?" + urllib.parse.quote(query, safe="=&%+/:,;@*")
        line = f'INFO:     {host}:{port} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" {status}'
        if not self.lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self.lines.append(f"{line} {seconds * 1000:.1f}ms\n")

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        self.stream.write("".join(lines))
        self.stream.flush()


class RequestTimer:
    """Observe each HTTP request's latency under its route template (never the raw path: bounded labels),
    and give it a line in the access log, when there is one.

    The clock stops when the response headers go out, so a long event stream counts as quick to answer.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, access_log: AccessLog | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        responded = False

        async def timed_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
                self._record(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            # The 500 for an unhandled error is sent by Starlette's outermost middleware, outside this one.
            if not responded:
                self._record(scope, 500, time.perf_counter() - started)
            raise

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        template = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.latency.labels(scope["method"], template, str(status)).observe(seconds)
        if self.access_log is not None:
            self.access_log.request(scope, status, seconds)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
