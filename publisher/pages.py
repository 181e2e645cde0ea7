"""The caption display page: ``GET /v1/sessions/{sid}/display`` and its static files under ``/static``.

The page is plain HTML, CSS and JavaScript (``publisher/static/``); it reads the captions WebSocket of the
same service with the ``token`` of its own URL, so serving it needs no secret and no session lookup.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
NO_CACHE = {"Cache-Control": "no-cache"}
"""Pages revalidate on every load, so a venue's bookmarked display picks up a new version."""


def add_display_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/v1/sessions/{sid}/display", include_in_schema=False)
    async def display_page(sid: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "display.html", media_type="text/html", headers=NO_CACHE)
