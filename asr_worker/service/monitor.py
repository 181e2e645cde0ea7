"""A worker's small HTTP side door: ``/metrics`` (Prometheus) and ``/healthz`` on WSP_WORKER_METRICS_PORT.

Started by the entry points (``wsp worker``, ``wsp up``), not by :class:`~asr_worker.service.worker.Worker`
itself, so tests and benchmarks that run many workers in one process open no ports. A port already in
use is logged and skipped: several bare-metal workers on one host share the default port, and the first
one serves it (the others still answer ``wsp check worker`` through their Redis heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.metrics import metrics_response
from common.serving import bind_listener

if TYPE_CHECKING:
    from asr_worker.service.worker import Worker

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class _QuietServer(uvicorn.Server):
    """Leaves signal handling to the worker (it drains on SIGTERM; the server just stops after it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def monitor_app(worker: Worker) -> Starlette:
    async def metrics(_: Request) -> Response:
        return metrics_response(worker.metrics.registry)

    async def healthz(_: Request) -> JSONResponse:
        healthy, detail = worker.health()
        body = {"status": "ok" if healthy else "unavailable", "worker": worker.id, "message": detail}
        return JSONResponse(body, status_code=200 if healthy else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


@contextlib.asynccontextmanager
async def worker_monitor(worker: Worker, host: str, port: int) -> AsyncIterator[int | None]:
    """Serve the worker's metrics and health while the block runs; yields the port, or None if off."""
    if port == 0:
        yield None
        return
    try:
        sock = bind_listener(host, port)
    except OSError as exc:
        log.warning(
            "worker %s: metrics port %s:%d unavailable (%s); serving no metrics", worker.id, host, port, exc
        )
        yield None
        return
    config = uvicorn.Config(monitor_app(worker), log_config=None, lifespan="off", access_log=False)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="worker-monitor")
    log.info("worker %s: metrics and health on http://%s:%d", worker.id, host, port)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        except TimeoutError:
            task.cancel()
        finally:
            sock.close()
