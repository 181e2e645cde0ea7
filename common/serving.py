"""Serving one HTTP service of the pipeline (`wsp ingest`, `wsp publisher`, and both inside `wsp up`)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from common import eventloop
from common.errors import ConfigError
from common.redis_conn import async_client, require_url
from common.settings import Settings

log = logging.getLogger(__name__)

ConfigFactory = Callable[[Settings, Any], Any]
"""``(settings, redis client) -> uvicorn.Config`` of one service."""

LISTEN_BACKLOG = 2048
"""Connections the kernel queues for a service before it accepts them (uvicorn's own default)."""
REDIS_CHECK_TIMEOUT_S = 5.0
"""How long a service's start-up waits to reach Redis before saying it cannot."""


def uvicorn_config(app: Any, settings: Settings, port: int, host: str | None = None, **extra: Any) -> Any:
    """How every HTTP service of the pipeline is served: its WebSockets, its logging, ``extra`` on top;
    on ``host`` (default ``WSP_HOST``)."""
    import uvicorn

    from common.ws_protocol import WebSocketProtocol

    options: dict[str, Any] = {
        "ws": WebSocketProtocol,  # websockets-sansio, answering handshakes it cannot parse
        # Caption frames are small and PCM barely compresses: deflating costs CPU on every message
        # (once per display for a caption) and saves little.
        "ws_per_message_deflate": False,
        "log_config": None,
        "log_level": settings.log_level.lower(),
        # The client address (per-client limits, logs) comes from X-Forwarded-For only from these proxies.
        "forwarded_allow_ips": settings.trusted_proxies,
        **extra,
    }
    return uvicorn.Config(app, host=host or settings.host, port=port, **options)


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (OSError if the address is taken or not this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_for(host: str, port: int, service: str, setting: str) -> socket.socket:
    """:func:`bind_listener`, a taken port being a :class:`ConfigError` that names the setting to change.

    A service binds its port before anything else starts, so a second ``wsp up`` (or a port another
    program holds) is one line, not a server that fails half-started."""
    try:
        return bind_listener(host, port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} for {service}: {exc.strerror or exc} "
            f"(another `wsp up` or service running? set {setting} to another port)"
        ) from exc


async def check_redis(url: str) -> None:
    """:class:`ConfigError` unless ``url`` is a Redis URL whose server answers."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    require_url(url)
    try:
        client = Redis.from_url(url, socket_connect_timeout=REDIS_CHECK_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError(f"WSP_REDIS_URL {url!r} is not a usable Redis URL: {exc}") from exc
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise ConfigError(f"cannot reach Redis at {url}: {exc}") from exc
    finally:
        await client.aclose()


def run_service(name: str, make_config: ConfigFactory, settings: Settings) -> int:
    """Serve one service until a signal stops it (logging is configured by the caller)."""
    eventloop.run(serve(name, make_config, settings, require_url(settings.redis_url)))
    return 0


async def serve(name: str, make_config: ConfigFactory, settings: Settings, redis_url: str) -> None:
    """Refuse to start without Redis or its port; else serve, and close the Redis client on the way out."""
    import uvicorn

    await check_redis(redis_url)
    redis = async_client(redis_url)
    try:
        config = make_config(settings, redis)
        sock = listen_for(config.host, config.port, name, f"WSP_{name.upper()}_PORT")
        log.info("%s on http://%s:%d, redis %s", name, config.host, config.port, redis_url)
        eventloop.freeze_startup_objects()
        try:
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            sock.close()
    finally:
        await redis.aclose()
