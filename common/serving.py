"""Serving one HTTP service of the pipeline (`wsp ingest`, `wsp publisher`, and both inside `wsp up`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from common import eventloop
from common.errors import ConfigError
from common.redis_conn import async_client, require_url
from common.settings import Settings

log = logging.getLogger(__name__)

ConfigFactory = Callable[[Settings, Any], Any]
"""``(settings, redis client) -> uvicorn.Config`` of one service."""


def uvicorn_config(app: Any, settings: Settings, port: int, host: str | None = None, **extra: Any) -> Any:
    """How every HTTP service of the pipeline is served: its WebSockets, its logging, ``extra`` on top;
    on ``host`` (default ``WSP_HOST``)."""
    import uvicorn

    from common.ws_protocol import WebSocketProtocol

    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port,
        ws=WebSocketProtocol,  # websockets-sansio, answering handshakes it cannot parse
        # Caption frames are small and PCM barely compresses: deflating costs CPU on every message
        # (once per display for a caption) and saves little.
        ws_per_message_deflate=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        **extra,
    )


def run_service(name: str, make_config: ConfigFactory, settings: Settings) -> int:
    """Serve one service until a signal stops it (logging is configured by the caller)."""
    eventloop.run(serve(name, make_config, settings, require_url(settings.redis_url)))
    return 0


async def serve(name: str, make_config: ConfigFactory, settings: Settings, redis_url: str) -> None:
    """Refuse to start without Redis; otherwise serve, and close the Redis client on the way out."""
    import uvicorn
    from redis.exceptions import RedisError

    redis = async_client(redis_url)
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(f"cannot reach Redis at {redis_url}: {exc}") from exc
        config = make_config(settings, redis)
        log.info("%s on http://%s:%d, redis %s", name, config.host, config.port, redis_url)
        eventloop.freeze_startup_objects()
        await uvicorn.Server(config).serve()
    finally:
        await redis.aclose()
