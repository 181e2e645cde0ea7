"""How the publisher service is served: its uvicorn configuration (``wsp publisher``, ``wsp up``)."""

from __future__ import annotations

from typing import Any

from common.serving import uvicorn_config
from common.settings import Settings
from common.ws_protocol import WebSocketProtocol
from publisher.app import create_app
from publisher.hub import CLOSE_TOO_SLOW

PINGS_PER_TIMEOUT = 2
"""Keepalive pings per ``WSP_DISPLAY_TIMEOUT_S``: a display that reads nothing is closed between one and
one and a half timeouts after it stopped."""


class DisplayProtocol(WebSocketProtocol):
    """A display that leaves a ping unanswered reads nothing: it is too slow (4408), like one whose queue
    overflows, and the publisher counts it as dropped."""

    keepalive_close = (CLOSE_TOO_SLOW, "too slow")


def display_socket_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options of the displays' WebSockets: the keepalive that finds displays reading nothing."""
    return {
        "ws": DisplayProtocol,
        "ws_ping_interval": settings.display_timeout_s / PINGS_PER_TIMEOUT,
        "ws_ping_timeout": settings.display_timeout_s,
    }


def server_config(settings: Settings, redis: Any) -> Any:
    """The uvicorn configuration of the publisher (also used by ``wsp up``)."""
    return uvicorn_config(
        create_app(settings, redis),
        settings,
        settings.publisher_port,
        host=settings.publisher_listen_host(),
        **display_socket_options(settings),
    )
