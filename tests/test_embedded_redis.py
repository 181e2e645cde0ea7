"""The embedded Redis of one-command mode and tests: a real server, configured for live captions."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from common.redis_conn import EmbeddedRedis

pytestmark = pytest.mark.redis


def test_the_embedded_redis_never_forks_a_snapshot() -> None:
    # A BGSAVE fork under load stalls every caption for tens of milliseconds.
    server = EmbeddedRedis()
    try:
        with redis.Redis.from_url(server.url) as db:
            assert db.config_get("save") == {"save": ""}
            assert db.config_get("appendonly") == {"appendonly": "no"}
    finally:
        server.close()


def test_a_persistent_embedded_redis_logs_every_write(tmp_path: Path) -> None:
    server = EmbeddedRedis(directory=tmp_path, persistent=True)
    try:
        with redis.Redis.from_url(server.url) as db:
            assert db.config_get("appendonly") == {"appendonly": "yes"}
            assert db.config_get("save") == {"save": ""}
    finally:
        server.close()
