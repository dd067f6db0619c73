"""Shared fixtures: a real Redis (REDIS_URL when it answers, else a private server) and key isolation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from simtrain.queue import JobQueue
from simtrain.redis_server import PrivateRedis, redis_answers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "")
    if url and redis_answers(url):
        yield url
        return
    with PrivateRedis() as server:
        yield server.url


@pytest.fixture
def key_prefix() -> str:
    """A fresh key prefix, so no test sees another's keys."""
    return f"simtrain-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def job_queue(redis_url: str, key_prefix: str) -> Iterator[JobQueue]:
    queue = JobQueue.from_url(redis_url, prefix=key_prefix, lease_ms=30_000)
    yield queue
    keys = list(queue.r.scan_iter(f"{key_prefix}*"))
    if keys:
        queue.r.delete(*keys)
