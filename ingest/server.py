"""How the ingest service is served: its uvicorn configuration (``wsp ingest``, ``wsp up``)."""

from __future__ import annotations

from typing import Any

from common.serving import uvicorn_config
from common.settings import Settings
from ingest.app import create_app

WS_MAX_SIZE_FLOOR = 1 << 20
"""The WebSocket layer accepts messages up to this size (or 4x the frame limit), so a frame that is
merely too large gets a clear 4413 error from the protocol instead of a bare 1009 close."""


def server_config(settings: Settings, redis: Any) -> Any:
    """The uvicorn configuration of the ingest service (also used by ``wsp up``)."""
    return uvicorn_config(
        create_app(settings, redis),
        settings,
        settings.ingest_port,
        ws_max_size=max(WS_MAX_SIZE_FLOOR, 4 * settings.max_frame_bytes),
    )
