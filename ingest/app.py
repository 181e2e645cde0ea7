"""The ingest HTTP service: create sessions, look them up, and take their audio (see :mod:`ingest.audio_ws`).

``create_app(settings, redis)`` builds the FastAPI application around a ``redis.asyncio`` client that the
caller owns (and closes).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common import keys
from common.options import WHISPER_LANGUAGES
from common.schemas import SessionCreate, SessionRecord, TrackSpec
from common.settings import Settings
from ingest.audio_ws import AudioLimits, audio_router
from ingest.store import SessionStore

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with a short code and a sentence for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)


def new_session_id() -> str:
    """22 URL-safe random characters: unguessable, and a valid key hash tag."""
    return keys.check_session_id(secrets.token_urlsafe(16))


def build_record(body: SessionCreate, sid: str, now: float) -> SessionRecord:
    """Validate a creation request against what the pipeline can do and turn it into a record."""
    language = body.language.strip().lower()
    if language not in WHISPER_LANGUAGES:
        raise ApiError(
            422,
            "unknown_language",
            f"unknown language {body.language[:20]!r}: use a Whisper language code such as 'ja' or 'en'",
        )
    tracks = body.tracks or [TrackSpec(name=language, task="transcribe")]
    names = [track.name for track in tracks]
    if len(set(names)) != len(names):
        raise ApiError(422, "duplicate_track", f"track names must be unique, got {names}")
    for track in tracks:
        expected = "en" if track.task == "translate" else language
        if track.name != expected:
            raise ApiError(
                422,
                "bad_track",
                f"a {track.task} track of {language!r} audio outputs {expected!r}, so it must be named "
                f"{expected!r} (got {track.name!r})",
            )
    glossary = [term.strip() for term in body.glossary if term.strip()]
    return SessionRecord(
        id=sid, title=body.title.strip(), language=language, tracks=tracks, glossary=glossary, created_at=now
    )


def session_urls(request: Request, settings: Settings, sid: str) -> dict[str, str]:
    """Where a client sends the audio (this service) and where displays read captions (the publisher)."""
    secure = request.url.scheme in ("https", "wss")
    ws, http = ("wss", "https") if secure else ("ws", "http")
    here = request.url.netloc
    publisher = f"{request.url.hostname}:{settings.publisher_port}"
    return {
        "audio_url": f"{ws}://{here}/v1/sessions/{sid}/audio",
        "captions_url": f"{ws}://{publisher}/v1/sessions/{sid}/captions",
        "display_url": f"{http}://{publisher}/v1/sessions/{sid}/display",
    }


def _session_id(sid: str) -> str:
    try:
        return keys.check_session_id(sid)
    except keys.InvalidId as exc:
        raise ApiError(400, "invalid_session_id", str(exc)) from exc


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(settings: Settings, redis: Redis) -> FastAPI:
    store = SessionStore(redis)
    app = FastAPI(title="wsp ingest", version="1")
    app.state.settings = settings
    app.state.store = store
    app.include_router(
        audio_router(store, AudioLimits(settings.max_frame_bytes, settings.audio_stream_max_s))
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RedisError)
    async def _storage(request: Request, exc: RedisError) -> JSONResponse:
        log.error("redis failed on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "unavailable", "session storage is unavailable; try again shortly")

    @app.post("/v1/sessions", status_code=201)
    async def create_session(body: SessionCreate, request: Request) -> dict[str, Any]:
        sid = new_session_id()
        record = build_record(body, sid, time.time())
        await store.create(record)
        return {"id": sid, "record": record.model_dump(mode="json"), **session_urls(request, settings, sid)}

    @app.get("/v1/sessions/{sid}")
    async def get_session(sid: str, request: Request) -> dict[str, Any]:
        view = await store.get(_session_id(sid))
        if view is None:
            raise ApiError(404, "unknown_session", f"no session {sid!r}")
        record = view.record.model_dump(mode="json")
        record["status"] = view.status
        return {
            "id": sid,
            "record": record,
            "status": view.status,
            "samples": view.samples,
            "audio_ended": view.audio_ended,
            **session_urls(request, settings, sid),
        }

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            await store.ping()
        except RedisError as exc:
            return JSONResponse({"ok": False, "redis": str(exc)}, status_code=503)
        return JSONResponse({"ok": True})

    return app
