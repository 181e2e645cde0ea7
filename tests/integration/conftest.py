"""Fixtures of the integration tier (the shared ``redis_url`` and ``db`` are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.restartable import RestartableRedis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A Redis server of the test's own, that it may freeze or restart: its session count starts at 0."""
    server = RestartableRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.close()
