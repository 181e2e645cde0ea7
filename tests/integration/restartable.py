"""A Redis server a test can freeze, stop and start again, and services served from a thread against it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from common.redis_conn import EmbeddedRedis
from tests.served import Served


class RestartableRedis:
    """A real Redis server on a fixed port that can be frozen, or stopped and started again with its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.server = EmbeddedRedis(directory=directory, persistent=True)
        self.url = self.server.url
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def freeze(self, seconds: float) -> None:
        os.kill(self.server.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.server.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.server.close()

    def start(self) -> None:
        self.server = EmbeddedRedis(port=self.port, directory=self.directory, persistent=True)

    def close(self) -> None:
        self.server.close()


def serve_in_thread(app_factory: Callable[[Redis], Any], url: str) -> tuple[str, Callable[[], None]]:
    """Run an app under uvicorn in a thread on a free port; its base URL and a stop function."""
    served = Served(app_factory, url, ws="auto")
    return f"127.0.0.1:{served.port}", served.stop
