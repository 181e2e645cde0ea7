"""`wsp` subcommands of the publisher package (registered by common.cli)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from common.errors import ConfigError
from common.logs import configure_logging
from common.redis_conn import async_client, require_url
from common.settings import Settings, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `wsp` parser."""
    parser = sub.add_parser(
        "publisher",
        help="serve caption displays: live captions over WebSocket, history replay, SRT/WebVTT export",
    )
    parser.set_defaults(func=cmd_publisher)


def cmd_publisher(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = require_url(settings.redis_url)
    verbose = getattr(args, "verbose", False)
    configure_logging(logging.DEBUG if verbose else settings.log_level, settings.log_format)
    asyncio.run(serve(settings, url))
    return 0


def server_config(settings: Settings, redis: Any) -> Any:
    """The uvicorn configuration of the publisher (also used by ``wsp up``)."""
    import uvicorn

    from common.ws_protocol import WebSocketProtocol
    from publisher.app import create_app

    return uvicorn.Config(
        create_app(settings, redis),
        host=settings.host,
        port=settings.publisher_port,
        ws=WebSocketProtocol,  # websockets-sansio, answering handshakes it cannot parse
        log_config=None,
        log_level=settings.log_level.lower(),
    )


async def serve(settings: Settings, url: str) -> None:
    """Run the publisher until interrupted."""
    import uvicorn
    from redis.exceptions import RedisError

    redis = async_client(url)
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(f"cannot reach Redis at {url}: {exc}") from exc
        print(f"publisher on http://{settings.host}:{settings.publisher_port}", file=sys.stderr)
        await uvicorn.Server(server_config(settings, redis)).serve()
    finally:
        await redis.aclose()
