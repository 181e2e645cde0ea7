"""Everything in one process tree: embedded Redis (unless ``WSP_REDIS_URL`` is set), ingest, one ASR
worker and the publisher. Used by ``wsp up`` and ``wsp demo``.

The two HTTP services run as uvicorn servers on one event loop and the worker as a task beside them;
the model runs in a thread, so a decoding step never blocks audio intake or caption fan-out.
Stopping is flag, drain, deadline: the worker finishes its current step and releases its leases,
then the servers close, then the embedded Redis stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from redis.asyncio import Redis

from asr_worker.service.monitor import worker_monitor
from asr_worker.service.worker import Worker
from asr_worker.transcribers.factory import make_transcriber, uses_vad
from common.contract import leases
from common.errors import WspError
from common.redis_conn import EmbeddedRedis, async_client
from common.settings import Settings
from ingest.server import server_config as ingest_config
from publisher.server import server_config as publisher_config

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0
"""Longest wait for the services and the worker (which loads the model) to come up."""


EMBEDDED_FSYNC = "everysec"
"""The embedded Redis of `wsp up` writes its append-only file to disk every second: a stopped or killed
`wsp up` loses nothing, a machine that loses power at most the last second."""


def embedded_redis(settings: Settings, persistent: bool) -> EmbeddedRedis:
    """The embedded Redis of the stack: in ``WSP_REDIS_DATA_DIR`` with an append-only file, or ephemeral."""
    if not persistent:
        return EmbeddedRedis()
    return EmbeddedRedis(directory=settings.redis_data_dir, persistent=True, fsync=EMBEDDED_FSYNC)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the stack (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class StackUrls:
    redis: str
    ingest: str
    publisher: str
    """Where displays reach the publisher (its public address when it has one)."""


class Stack:
    """Start with ``await stack.start()``, stop with ``await stack.stop()``.

    ``persistent``: the embedded Redis keeps its data in ``WSP_REDIS_DATA_DIR`` (an append-only file),
    so sessions survive a restart (``wsp up``); otherwise it starts empty in a temporary folder.
    """

    def __init__(self, settings: Settings, persistent: bool = False) -> None:
        self._settings = settings
        self._persistent = persistent
        self._embedded: EmbeddedRedis | None = None
        self._clients: list[Redis] = []
        self._servers: list[_QuietServer] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._monitor = contextlib.AsyncExitStack()
        self.worker: Worker | None = None
        self.settings = settings
        self.urls: StackUrls | None = None

    async def start(self) -> StackUrls:
        if self._settings.redis_url:
            url = self._settings.redis_url
        else:
            self._embedded = await asyncio.to_thread(embedded_redis, self._settings, self._persistent)
            url = self._embedded.url
        self.settings = settings = self._settings.model_copy(update={"redis_url": url})
        for make in (ingest_config, publisher_config):
            client = async_client(url)
            self._clients.append(client)
            server = _QuietServer(make(settings, client))
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(server.serve()))
        self.worker = Worker(settings, make_transcriber, vad=uses_vad(settings))
        self._tasks.append(asyncio.create_task(self.worker.run()))
        monitor = worker_monitor(self.worker, settings.host, settings.worker_metrics_port)
        await self._monitor.enter_async_context(monitor)
        await self._wait_ready(url)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        publisher = settings.public_url or f"http://{host}:{settings.publisher_port}"
        self.urls = StackUrls(url, f"http://{host}:{settings.ingest_port}", publisher)
        return self.urls

    async def _wait_ready(self, url: str) -> None:
        assert self.worker is not None
        probe = Redis.from_url(url)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + READY_TIMEOUT_S
            while loop.time() < deadline:
                for task in self._tasks:
                    if task.done():
                        exc = task.exception()
                        if isinstance(exc, WspError):
                            raise exc
                        raise WspError(f"a service stopped while starting: {exc or 'it exited'}")
                servers_up = all(s.started for s in self._servers)
                if servers_up and await leases.last_heartbeat(probe, self.worker.id) is not None:
                    return
                await asyncio.sleep(0.1)
            raise WspError(f"the services did not come up within {READY_TIMEOUT_S:.0f} s")
        finally:
            await probe.aclose()

    async def wait(self) -> None:
        """Until any service stops by itself (an error) or the caller is cancelled."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise WspError(f"a service failed: {task.exception()}")

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        worker_task = self._tasks[-1:] if self.worker is not None else []
        if worker_task:
            await asyncio.wait(worker_task, timeout=35)
        for server in self._servers:
            server.should_exit = True
        _, pending = await asyncio.wait(self._tasks, timeout=10) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._monitor.aclose()
        for client in self._clients:
            await client.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.close)
