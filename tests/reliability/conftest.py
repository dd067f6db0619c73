"""Fixtures of the reliability tests: a data service on the demo corpus, settings, worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simtrain.settings import Settings
from tests.integration.trainer_support import DataService, start_data_service
from tests.reliability.support import Workers, worker_env


@pytest.fixture(scope="module")
def data_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataService]:
    yield from start_data_service(tmp_path_factory.mktemp("reliability"))


@pytest.fixture
def settings(data_service: DataService, redis_url: str, key_prefix: str) -> Settings:
    return data_service.settings.model_copy(update={"redis_url": redis_url, "key_prefix": key_prefix})


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes (started by the test); each is killed at the end if still running."""
    pool = Workers(worker_env(settings, lease_ms=1500), tmp_path)
    yield pool
    pool.stop_all()
