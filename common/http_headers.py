"""Fixed response headers for every HTTP answer of a service (its pages, its API, its errors).

A pure ASGI middleware, so it sees every response, including the error bodies of exception handlers and
the static files, and leaves WebSockets alone. Each service names its own headers: the microphone page
may not be framed by another site, the caption display must stay embeddable (OBS browser sources).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import MutableHeaders

NO_SNIFF = {"X-Content-Type-Options": "nosniff"}
"""Browsers take each response as the type it says, never guessing script from a text file."""
NO_REFERRER = {"Referrer-Policy": "no-referrer"}
"""Page URLs carry tokens (``?token=``): a link followed from them must not hand the URL on."""
NO_FRAMING = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}
"""No other page may show this one in a frame (clickjacking of the session controls)."""


class FixedHeaders:
    """Adds ``headers`` to every HTTP response of ``app`` (without replacing one the app set)."""

    def __init__(self, app: Any, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    present.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
