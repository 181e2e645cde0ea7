"""Everything in one process tree: embedded Redis (unless ``WSP_REDIS_URL`` is set), ingest, one ASR
worker and the publisher. Used by ``wsp up`` and ``wsp demo``.

The two HTTP services run as uvicorn servers on one event loop and the worker as a task beside them;
the model runs in a thread, so a decoding step never blocks audio intake or caption fan-out.
Start-up checks what a user can get wrong before anything runs: both ports are bound first and the
Redis URL must answer, each a :class:`~common.errors.ConfigError` of one line; a start that fails later
stops what it had started. The embedded Redis is supervised: if it dies it is started again on the same
port and directory (the services reconnect, as after any Redis restart), and if it keeps dying the
stack stops with one line. It is a child that dies with this process, even on SIGKILL.
Stopping is flag, drain, deadline: the worker finishes its current step and releases its leases,
then the servers close, then the embedded Redis stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
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
from common.serving import check_redis, listen_for
from common.settings import Settings
from ingest.server import server_config as ingest_config
from publisher.server import server_config as publisher_config

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0
"""Longest wait for the services and the worker (which loads the model) to come up."""
SUPERVISE_INTERVAL_S = 0.5
"""How often the embedded Redis is checked."""
REDIS_RESTARTS = 3
REDIS_RESTART_WINDOW_S = 60.0
"""The embedded Redis is started again at most this many times within this window; then the stack stops."""
EMBEDDED_FSYNC = "everysec"
"""The embedded Redis of `wsp up` writes its append-only file to disk every second: a stopped or killed
`wsp up` loses nothing, a machine that loses power at most the last second."""


def embedded_redis(settings: Settings, persistent: bool) -> EmbeddedRedis:
    """The embedded Redis of the stack: in ``WSP_REDIS_DATA_DIR`` with an append-only file, or ephemeral.

    Started from the calling thread, which must live as long as the server should (see EmbeddedRedis).
    """
    maxmemory = settings.redis_maxmemory if settings.redis_maxmemory_bytes() else None
    if not persistent:
        return EmbeddedRedis(maxmemory=maxmemory)
    return EmbeddedRedis(
        directory=settings.redis_data_dir, persistent=True, maxmemory=maxmemory, fsync=EMBEDDED_FSYNC
    )


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
        self._supervisor: asyncio.Task[None] | None = None
        self._sockets: list[socket.socket] = []
        self._monitor = contextlib.AsyncExitStack()
        self.worker: Worker | None = None
        self.settings = settings
        self.urls: StackUrls | None = None

    async def start(self) -> StackUrls:
        """Start everything; on a failure, what was started is stopped again before the error is raised."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> StackUrls:
        base = self._settings
        self._sockets.append(listen_for(base.host, base.ingest_port, "ingest", "WSP_INGEST_PORT"))
        self._sockets.append(
            listen_for(
                base.publisher_listen_host(), base.publisher_port, "the publisher", "WSP_PUBLISHER_PORT"
            )
        )
        sockets = list(self._sockets)
        if base.redis_url:
            url = base.redis_url
            await check_redis(url)
        else:  # started from the loop's thread, which lives as long as the server should
            self._embedded = embedded_redis(base, self._persistent)
            url = self._embedded.url
            self._supervisor = asyncio.create_task(
                self._supervise_redis(self._embedded), name="redis-supervisor"
            )
        self.settings = settings = base.model_copy(update={"redis_url": url})
        for make, sock in zip((ingest_config, publisher_config), sockets, strict=True):
            client = async_client(url)
            self._clients.append(client)
            server = _QuietServer(make(settings, client))
            self._servers.append(server)
            self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
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
        watched = [*self._tasks, *([self._supervisor] if self._supervisor is not None else [])]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, WspError):
                raise error
            if error is not None:
                raise WspError(f"a service failed: {error}")

    async def _supervise_redis(self, server: EmbeddedRedis) -> None:
        """Start the embedded Redis again whenever it dies; :class:`WspError` once it keeps dying."""
        loop = asyncio.get_running_loop()
        restarts: deque[float] = deque()
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            code = server.exit_code()
            if code is None:
                continue
            now = loop.time()
            while restarts and now - restarts[0] > REDIS_RESTART_WINDOW_S:
                restarts.popleft()
            if len(restarts) >= REDIS_RESTARTS:
                raise WspError(
                    f"the embedded Redis stopped {len(restarts) + 1} times within "
                    f"{REDIS_RESTART_WINDOW_S:g} s (last exit code {code}); see {server.log_path}"
                )
            lost = "" if server.persistent else "; it keeps no data on disk, so open sessions are lost"
            log.error(
                "the embedded Redis stopped (exit code %s); starting it again at %s%s", code, server.url, lost
            )
            restarts.append(now)
            try:
                server.restart()  # from the loop's thread, like the first start
                await asyncio.to_thread(server.wait_ready)
            except WspError as exc:
                raise WspError(f"the embedded Redis stopped and could not be started again: {exc}") from exc
            log.info("the embedded Redis is back at %s", server.url)

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
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
        for sock in self._sockets:
            sock.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.close)
