"""Fixtures shared by the integration tests: a real Redis server per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from common.redis_conn import EmbeddedRedis


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """``WSP_REDIS_URL`` when set, else an embedded redis-server started for the module."""
    url = os.environ.get("WSP_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def db(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client of that server."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
