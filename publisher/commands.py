"""`wsp` subcommands of the publisher package (registered by common.cli)."""

from __future__ import annotations

import argparse
from typing import Any

from common.serving import run_service
from common.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `wsp` parser."""
    parser = sub.add_parser(
        "publisher",
        help="serve caption displays: live captions over WebSocket, history replay, SRT/WebVTT export",
    )
    parser.set_defaults(func=cmd_publisher)


def cmd_publisher(args: argparse.Namespace) -> int:
    return run_service("publisher", server_config, args)


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
        ws_per_message_deflate=False,  # small frames: compressing costs CPU per display, saves little
        log_config=None,
        log_level=settings.log_level.lower(),
    )
