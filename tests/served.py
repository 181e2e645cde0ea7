"""Run a service app under uvicorn in a thread, on a free port, with its own Redis client."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from redis.asyncio import Redis

from tests.waiting import wait_until

START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """``Served(lambda client: create_app(settings, client), redis_url)``; ``stop()`` when done.

    The app is built on the server's own event loop (the Redis client belongs to that loop).
    Extra keyword arguments go to ``uvicorn.Config``.
    """

    def __init__(
        self, build: Callable[[Redis], Any], redis_url: str, port: int | None = None, **config: Any
    ) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._holder: dict[str, Any] = {}
        config.setdefault("ws", "websockets-sansio")
        config.setdefault("log_config", None)

        async def serve() -> None:
            client = Redis.from_url(redis_url)
            self._holder["app"] = build(client)
            server = uvicorn.Server(
                uvicorn.Config(self._holder["app"], host="127.0.0.1", port=self.port, **config)
            )
            self._holder["server"] = server
            try:
                await server.serve()
            finally:
                await client.aclose()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self._thread.start()

        def started() -> bool:
            assert self._thread.is_alive(), "the service stopped while starting"
            return bool(self._holder.get("server") and self._holder["server"].started)

        wait_until(started, START_TIMEOUT_S, "the service to start")

    @property
    def app(self) -> Any:
        return self._holder["app"]

    @property
    def server(self) -> uvicorn.Server:
        server: uvicorn.Server = self._holder["server"]
        return server

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
