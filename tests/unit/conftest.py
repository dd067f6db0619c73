"""Fixtures the unit tests of preparation share: a data root to put sources in, and a store beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_service.store import Store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "prepared")
