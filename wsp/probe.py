"""``wsp check ingest|publisher|worker``: the health probe a compose healthcheck runs.

Exit 0 when the service is ready, 1 with one line saying why when it is not (any problem, a bad
setting included: Docker reserves exit code 2). Ingest and the publisher are asked for ``/readyz``
(the process answers and reaches Redis); a worker for ``/healthz`` on its metrics port (its heartbeat
reaches Redis), or, with that port off (``WSP_WORKER_METRICS_PORT=0``), Redis is asked whether a
worker of this host (or ``WSP_WORKER_ID``) has sent a heartbeat within one lease TTL.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import Any

from pydantic import ValidationError

from common.contract import leases
from common.errors import WspError
from common.redis_conn import require_url
from common.settings import Settings, describe

SERVICES = ("ingest", "publisher", "worker")
DEFAULT_TIMEOUT_S = 3.0
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def local_host(host: str) -> str:
    """Where this host's service is reached: a wildcard listen address means the loopback."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def default_url(service: str, settings: Settings) -> str | None:
    """The URL that says whether ``service`` on this host is ready; None for a worker without a port."""
    host = local_host(settings.publisher_listen_host() if service == "publisher" else settings.host)
    if ":" in host:
        host = f"[{host}]"
    if service == "ingest":
        return f"http://{host}:{settings.ingest_port}/readyz"
    if service == "publisher":
        return f"http://{host}:{settings.publisher_port}/readyz"
    if settings.worker_metrics_port:
        return f"http://{host}:{settings.worker_metrics_port}/healthz"
    return None


def probe_http(url: str, timeout: float) -> tuple[bool, str]:
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"{url} is unreachable: {exc or type(exc).__name__}"
    if response.status_code == 200:
        return True, f"ready ({url})"
    try:
        body: Any = response.json()
        detail = body.get("message") or body.get("status") or response.text
    except ValueError:
        detail = response.text
    return False, f"{url} answered {response.status_code}: {str(detail).strip()[:200]}"


def probe_heartbeat(settings: Settings, timeout: float) -> tuple[bool, str]:
    """A worker of this host (or WSP_WORKER_ID) heartbeat within one lease TTL, according to Redis."""
    return asyncio.run(_heartbeat(settings, timeout))


async def _heartbeat(settings: Settings, timeout: float) -> tuple[bool, str]:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    url = require_url(settings.redis_url)
    host = socket.gethostname()
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        seen = await leases.seen_since(client, time.time() - settings.lease_ttl_s)
        if settings.worker_id:
            if settings.worker_id in seen:
                return True, f"worker {settings.worker_id} heartbeat is current"
        else:
            for worker in await leases.advertisements(client, seen):
                if worker.host == host:
                    return True, f"worker {worker.worker_id} heartbeat is current"
    except RedisError as exc:
        return False, f"cannot reach Redis at {url}: {exc}"
    finally:
        await client.aclose()
    window = f"within {settings.lease_ttl_s:g} s"
    if settings.worker_id:
        return False, f"worker {settings.worker_id} has sent no heartbeat {window}"
    return False, f"no worker of host {host} has sent a heartbeat {window}"


def run_check(service: str, settings: Settings, url: str | None, timeout: float) -> tuple[bool, str]:
    """(healthy, one line saying so)."""
    target = url or default_url(service, settings)
    if target is None:
        return probe_heartbeat(settings, timeout)
    return probe_http(target, timeout)


def check(service: str, url: str | None, timeout: float) -> int:
    """``wsp check SERVICE``: print one line, exit 0 when ready, 1 when not."""
    try:
        healthy, message = run_check(service, Settings(), url, timeout)
    except ValidationError as exc:
        healthy, message = False, "invalid settings: " + describe(exc, prefix="WSP_")
    except WspError as exc:
        healthy, message = False, str(exc)
    print(f"wsp check {service}: {message}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
