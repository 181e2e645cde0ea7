"""The embedded Redis of one-command mode and tests: a real server, configured for live captions."""

from __future__ import annotations

from pathlib import Path

import redis

from common.redis_conn import EmbeddedRedis


def persistence_config(server: EmbeddedRedis) -> dict[str, str]:
    """The server's snapshot and append-only settings; the server is closed afterwards."""
    try:
        with redis.Redis.from_url(server.url, decode_responses=True) as db:
            return {**db.config_get("save"), **db.config_get("appendonly")}
    finally:
        server.close()


def test_the_embedded_redis_never_forks_a_snapshot() -> None:
    # A BGSAVE fork under load stalls every caption for tens of milliseconds.
    assert persistence_config(EmbeddedRedis()) == {"save": "", "appendonly": "no"}


def test_a_persistent_embedded_redis_logs_every_write(tmp_path: Path) -> None:
    server = EmbeddedRedis(directory=tmp_path, persistent=True)
    assert persistence_config(server) == {"save": "", "appendonly": "yes"}
