"""Shared fixtures: a real Redis (REDIS_URL when it answers, else a private server) and key isolation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from simtrain.queue import JobQueue
from simtrain.redis_server import answering_redis
from simtrain.settings import Settings

if TYPE_CHECKING:  # imported where used: unit and deploy tests need no torch or data service
    from tests.integration.trainer_support import DataService


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when it answers, else a private server for the session."""
    with answering_redis(os.environ.get("REDIS_URL")) as url:
        yield url


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


@pytest.fixture(scope="module")
def data_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataService]:
    """A real data service serving the demo corpus, one per test module (for tests that train jobs)."""
    from tests.integration.trainer_support import start_data_service

    yield from start_data_service(tmp_path_factory.mktemp("data-service"))


@pytest.fixture
def settings(data_service: DataService, redis_url: str, key_prefix: str) -> Settings:
    """Settings that reach this module's data service, with this test's own Redis key prefix."""
    update = {"redis_url": redis_url, "key_prefix": key_prefix, "data_service_addr": data_service.address}
    return data_service.settings.model_copy(update=update)
