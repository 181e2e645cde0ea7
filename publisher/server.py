"""How the publisher service is served: its uvicorn configuration (``wsp publisher``, ``wsp up``)."""

from __future__ import annotations

from typing import Any

from common.serving import uvicorn_config
from common.settings import Settings
from publisher.app import create_app


def server_config(settings: Settings, redis: Any) -> Any:
    """The uvicorn configuration of the publisher (also used by ``wsp up``)."""
    return uvicorn_config(
        create_app(settings, redis), settings, settings.publisher_port, host=settings.publisher_listen_host()
    )
