"""The gateway's FastAPI application: one job queue, the job and health routes, one error shape."""

from __future__ import annotations

from importlib.metadata import version

import redis
from fastapi import FastAPI
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway import health, jobs
from gateway.errors import install_error_handlers
from simtrain.queue import JobQueue
from simtrain.settings import Settings, get_settings

DESCRIPTION = """\
Submit GPT training jobs that test whether a dataset, and the module that prepares it, is fit for
training; follow their progress and metrics; read the fit report.

Every error has the body `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="simtrain gateway", version=version("simtrain"), description=DESCRIPTION)
    app.state.settings = settings
    app.state.queue = JobQueue.from_url(settings.redis_url, settings.key_prefix, settings.lease_ms)
    # Readiness wants a quick answer: short timeouts, no retries.
    app.state.redis_probe = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=health.PROBE_TIMEOUT_S,
        socket_connect_timeout=health.PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(health.router)
    return app
