"""The microphone and session-control page: ``GET /`` and its static files under ``/static``.

Plain HTML, CSS and JavaScript (``ingest/static/``): it creates sessions through ``POST /v1/sessions``,
captures the microphone with an AudioWorklet and streams 16 kHz PCM to the audio WebSocket.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
NO_CACHE = {"Cache-Control": "no-cache"}
"""The page revalidates on every load, so an operator always gets the current version."""


def add_microphone_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def microphone_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=NO_CACHE)
