"""`wsp` subcommands of the publisher package (registered by common.cli)."""

from __future__ import annotations

import argparse
from typing import Any

from common.serving import run_service, uvicorn_config
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
    from publisher.app import create_app

    return uvicorn_config(create_app(settings, redis), settings, settings.publisher_port)
