"""The gateway's FastAPI application: routes, middleware (auth, limits, CORS, timing), one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import grpc
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway import (
    dataset_rows,
    datasets,
    events,
    experiments,
    fork,
    generate,
    health,
    jobs,
    observability,
    report_page,
    web,
)
from gateway.config import GatewaySettings
from gateway.errors import install_error_handlers
from gateway.job_reads import JobReads, RenderedRecords
from gateway.security import BearerAuth, BodyLimit
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.generate_queue import GenerateQueue
from simtrain.queue import JobQueue
from simtrain.settings import Settings, get_settings

DESCRIPTION = """\
Submit GPT training jobs that test whether a dataset, and the module that prepares it, is fit for
training; follow their progress, metrics and live events; read the fit report; manage datasets.

Every error has the body `{"error": {"code", "message", "details"}}`. When the gateway runs with
`SIMTRAIN_API_TOKEN` set, every endpoint but `/healthz` needs `Authorization: Bearer <token>`.
"""

UPLOAD_PATHS = frozenset({"/v1/sources"})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Clients bound to the server's event loop: Redis for event streams, gRPC for the data service."""
    settings: Settings = app.state.settings
    app.state.aredis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=10)
    limit = settings.grpc_max_message_bytes
    channel = grpc.aio.insecure_channel(
        settings.data_service_addr,
        options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
    )
    app.state.data_stub = pb_grpc.DataServiceStub(channel)
    try:
        yield
    finally:
        await channel.close()
        await app.state.aredis.aclose()


def _with_security_doc(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, plus the bearer scheme and the 401 every closed operation can answer."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "Required when the gateway runs with SIMTRAIN_API_TOKEN set",
            }
        }
        schema["security"] = [{"bearerAuth": []}]
        unauthorized = {
            "description": "Missing or wrong API token",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                if path == "/healthz":
                    operation["security"] = []
                else:
                    operation["responses"].setdefault("401", unauthorized)
                # Errors are JSON even where the success is a page or a file (FastAPI would document them
                # with the route's media type).
                for status, response in operation["responses"].items():
                    if status[0] in "45" and "application/json" not in response.get("content", {}):
                        response["content"] = error_body
        return schema

    return openapi


def create_app(
    settings: Settings | None = None,
    gateway: GatewaySettings | None = None,
    access_log: observability.AccessLog | None = None,
) -> FastAPI:
    """The app; ``access_log`` is for a server that leaves the access log to it (``python -m gateway``)."""
    settings = settings or get_settings()
    gateway = gateway or GatewaySettings()
    # /docs and /redoc are the web page's own (gateway.web): FastAPI's load their scripts from a CDN and
    # cannot send the token for the OpenAPI document.
    app = FastAPI(
        title="simtrain gateway",
        version=version("simtrain"),
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.gw = gateway
    app.state.queue = JobQueue.from_url(settings.redis_url, settings.key_prefix, settings.lease_ms)
    app.state.generate_queue = GenerateQueue.from_url(
        settings.redis_url, settings.key_prefix, wait_s=gateway.generate_timeout_s
    )
    # Readiness wants a quick answer: short timeouts, no retries.
    app.state.redis_probe = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=health.PROBE_TIMEOUT_S,
        socket_connect_timeout=health.PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    app.state.metrics = observability.GatewayMetrics(app.state.queue)
    install_error_handlers(app)
    routers = (
        jobs.router,
        fork.router,
        generate.router,
        report_page.router,
        events.router,
        jobs.models_router,
        datasets.router,
        experiments.router,
        experiments.compare_router,
        dataset_rows.router,
    )
    for router in (*routers, health.router):
        app.include_router(router)
    app.include_router(observability.router)
    app.include_router(web.router)
    app.mount("/static/vendor", web.vendor_files(), name="vendor")  # before /static, which would take it
    app.mount("/static", web.static_files(), name="static")
    app.openapi = _with_security_doc(app)  # type: ignore[method-assign]

    # Middleware, innermost first: the fast job read, size limits, auth, CORS (so preflights need no token),
    # timing.
    get_job = next(r for r in jobs.router.routes if isinstance(r, APIRoute) and r.endpoint is jobs.get_job)
    app.state.job_records = RenderedRecords()
    app.add_middleware(JobReads, route=get_job, prefix=settings.key_prefix, records=app.state.job_records)
    app.add_middleware(
        BodyLimit,
        limit=gateway.max_body_bytes,
        upload_limit=gateway.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
    )
    if gateway.api_token is not None and gateway.api_token.get_secret_value():
        app.add_middleware(BearerAuth, token=gateway.api_token.get_secret_value())
    if gateway.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=gateway.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "Idempotent-Replayed"],
        )
    app.add_middleware(observability.RequestTimer, metrics=app.state.metrics, access_log=access_log)
    return app
