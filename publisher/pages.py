"""The caption display page: ``GET /v1/sessions/{sid}/display`` and its static files under ``/static``,
and the short links that lead to it (``GET /d/<code>``).

The page is plain HTML, CSS and JavaScript (``publisher/static/``); it reads the captions WebSocket of the
same service with the ``token`` of its own URL, so serving it needs no secret and no session lookup.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError

from common.contract import keys, links

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
NO_CACHE = {"Cache-Control": "no-cache"}
"""Pages revalidate on every load, so a venue's bookmarked display picks up a new version."""


def add_display_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/v1/sessions/{sid}/display", include_in_schema=False)
    async def display_page(sid: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "display.html", media_type="text/html", headers=NO_CACHE)


UNKNOWN_LINK = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Live captions</title>
<body style="font:600 20px/1.5 system-ui,sans-serif;margin:10vw;background:#111;color:#eee">
<p>{message}</p></body></html>"""


def add_short_links(app: FastAPI, redis: Any) -> None:
    """``/d/k7m4-qx9p`` (any case, dash optional) redirects to the display it was made for."""

    @app.get("/d/{code}", include_in_schema=False)
    async def short_link(code: str) -> Response:
        clean = code.replace("-", "").strip().lower()
        try:
            target = await links.load(redis, clean) if keys.LINK_CODE.fullmatch(clean) else None
        except (RedisError, OSError) as exc:
            log.warning("short link %s: storage unreachable: %s", clean[:16], exc)
            message = "The caption server cannot read its links right now. Try again in a moment."
            return HTMLResponse(UNKNOWN_LINK.format(message=message), status_code=503)
        if target is None:
            message = (
                "This caption link is not known (mistyped, or its session is over). "
                "Check it with the operator's screen."
            )
            return HTMLResponse(UNKNOWN_LINK.format(message=message), status_code=404)
        return RedirectResponse(target.path(), status_code=302, headers=NO_CACHE)
