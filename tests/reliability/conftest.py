"""Fixtures of the reliability tests: a data service on the demo corpus, settings, worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simtrain.settings import Settings
from tests.reliability.support import Workers, worker_env


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes (started by the test); each is killed at the end if still running."""
    pool = Workers(worker_env(settings, lease_ms=1500), tmp_path)
    yield pool
    pool.stop_all()
