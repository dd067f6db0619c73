"""Fixtures the experiment tests share: a gateway under uvicorn in a thread, and a trainer worker in another.
A module that needs them imports them by name; conftest.py makes them the default in tests/integration."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from gateway.app import create_app
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import serve
from trainer_service.worker import Worker


@pytest.fixture
def gateway(settings: Settings) -> Iterator[httpx.Client]:
    with serve(create_app(settings)) as client:
        yield client


@pytest.fixture
def worker(settings: Settings, job_queue: JobQueue) -> Iterator[Worker]:
    worker = Worker(settings.model_copy(update={"worker_name": "w-test"}), job_queue)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    yield worker
    worker.stop()
    thread.join(timeout=60)
