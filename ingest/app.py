"""The ingest HTTP service: create sessions, look them up, and take their audio (see :mod:`ingest.audio_ws`).

``create_app(settings, redis)`` builds the FastAPI application around a ``redis.asyncio`` client that the
caller owns (and closes).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from typing import Any, TypeVar

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common import auth
from common.audio import SAMPLE_RATE
from common.contract import keys
from common.metrics import metrics_response
from common.options import WHISPER_LANGUAGES
from common.schemas import (
    DisplayLinks,
    DisplayLinksRequest,
    ErrorMessage,
    SessionCreate,
    SessionCreated,
    SessionLinks,
    SessionRecord,
    SessionState,
    TrackSpec,
)
from common.settings import Settings
from ingest.audio_ws import AudioLimits, audio_router
from ingest.displays import build_links
from ingest.metrics import IngestMetrics
from ingest.pages import add_microphone_page
from ingest.store import AtCapacity, SessionStore

log = logging.getLogger(__name__)

MAX_CREATE_BODY_BYTES = 64 * 1024
"""Largest ``POST /v1/sessions`` body: a session's settings (title, glossary, tracks) fit many times over."""

MAX_DISPLAYS_BODY_BYTES = 4096
"""Largest ``POST /v1/sessions/{sid}/displays`` body (a token)."""


class ApiError(Exception):
    """An HTTP error with a short code and a sentence for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(ErrorMessage(code=code, message=message).model_dump(), status_code=status)


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


def publisher_base(request: Request, settings: Settings) -> str:
    """The publisher as screens and phones reach it: ``WSP_PUBLIC_URL``, else the host this request
    came to with the publisher's port (right when both services run on one host)."""
    if settings.public_url:
        return settings.public_url
    secure = request.url.scheme in ("https", "wss")
    host = request.url.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if secure else 'http'}://{host}:{settings.publisher_port}"


def session_links(
    request: Request, settings: Settings, sid: str, tokens: auth.SessionTokens | None = None
) -> dict[str, Any]:
    """Where a client sends the audio (this service) and where displays read captions (the publisher):
    the fields of :class:`~common.schemas.SessionLinks`.

    With ``tokens`` (only when the session is created) each URL carries the right one: the audio URL the
    audio token, the captions and display URLs the read token. Otherwise no URL carries a secret.
    """
    ws = "wss" if request.url.scheme in ("https", "wss") else "ws"
    here = request.url.netloc
    publisher = publisher_base(request, settings)
    urls = {
        "audio_url": f"{ws}://{here}/v1/sessions/{sid}/audio",
        "captions_url": "ws" + publisher.removeprefix("http") + f"/v1/sessions/{sid}/captions",
        "display_url": f"{publisher}/v1/sessions/{sid}/display",
    }
    if tokens is not None:
        urls = {
            name: auth.with_token(url, tokens.audio if name == "audio_url" else tokens.read)
            for name, url in urls.items()
        }
    return SessionLinks(id=sid, **urls).model_dump()


def _require(denied: auth.Denied | None) -> None:
    if denied is not None:
        raise ApiError(401, auth.UNAUTHORIZED, denied.message)


def _session_id(sid: str) -> str:
    try:
        return keys.check_session_id(sid)
    except keys.InvalidId as exc:
        raise ApiError(400, "invalid_session_id", str(exc)) from exc


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it grows past ``limit`` bytes (never held whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the request body must be at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the request body must be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_create(raw: bytes) -> SessionCreate:
    """The body of ``POST /v1/sessions`` (JSON; empty means every default)."""
    return parse_body(SessionCreate, raw)


Body = TypeVar("Body", bound=BaseModel)


def parse_body(model: type[Body], raw: bytes) -> Body:
    """A JSON request body as ``model`` (empty means every default); 422 naming each bad field."""
    try:
        return model.model_validate_json(raw.strip() or b"{}")
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise ApiError(422, "invalid_request", "invalid request: " + "; ".join(parts)[:500]) from exc


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(settings: Settings, redis: Redis) -> FastAPI:
    store = SessionStore(redis)
    api_key = settings.api_key_value()
    app = FastAPI(title="wsp ingest", version="1")
    app.state.settings = settings
    app.state.store = store
    metrics = IngestMetrics()
    app.state.metrics = metrics
    add_microphone_page(app)
    app.include_router(
        audio_router(
            store,
            AudioLimits(
                settings.max_frame_bytes,
                settings.audio_stream_max_s,
                round(settings.max_session_s * SAMPLE_RATE),
            ),
            api_key,
            metrics=metrics,
        )
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

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
    async def create_session(request: Request) -> SessionCreated:
        """The key is checked before the body is even read; the body is read up to a bound."""
        if api_key and not auth.is_api_key(auth.bearer(request.headers.get("authorization")), api_key):
            raise ApiError(
                401, auth.UNAUTHORIZED, "creating a session needs the API key: Authorization: Bearer <key>"
            )
        body = parse_create(await read_body(request, MAX_CREATE_BODY_BYTES))
        sid = new_session_id()
        record = build_record(body, sid, time.time())
        tokens = auth.issue()
        try:
            await store.create(record, tokens.hashes(), settings.max_sessions)
        except AtCapacity as exc:
            raise ApiError(503, "at_capacity", str(exc)) from exc
        metrics.sessions_created.inc()
        return SessionCreated(
            record=record,
            audio_token=tokens.audio,
            read_token=tokens.read,
            **session_links(request, settings, sid, tokens),
        )

    @app.post("/v1/sessions/{sid}/displays")
    async def display_links(sid: str, request: Request) -> DisplayLinks:
        """The session's display links with short links and QR codes; they carry the read token, so
        only the read token asks for them (in the body: it never lands in a URL or an access log)."""
        sid = _session_id(sid)
        body = parse_body(DisplayLinksRequest, await read_body(request, MAX_DISPLAYS_BODY_BYTES))
        allowed = auth.is_read_token(body.read_token, await store.token_hashes(sid))
        view = await store.get(sid) if allowed else None
        if view is None:
            message = "display links need the session's read token (the one its links carry)"
            raise ApiError(401, auth.UNAUTHORIZED, message)
        base = publisher_base(request, settings)
        displays = await build_links(redis, settings, base, view.record, body.read_token)
        return DisplayLinks(id=sid, displays=displays)

    @app.get("/v1/sessions/{sid}")
    async def get_session(sid: str, request: Request) -> SessionState:
        sid = _session_id(sid)
        token = auth.presented_token(request.query_params, request.headers)
        _require(await auth.authorize(token, auth.Scope.READ, api_key, lambda: store.token_hashes(sid)))
        view = await store.get(sid)
        if view is None:
            raise ApiError(404, "unknown_session", f"no session {sid!r}")
        return SessionState(
            record=view.record,
            status=view.status,
            samples=view.samples,
            audio_ended=view.audio_ended,
            **session_links(request, settings, sid),
        )

    @app.websocket("/{path:path}")
    async def no_such_socket(websocket: WebSocket, path: str) -> None:
        """Any other WebSocket path (e.g. an id with a '/') gets a JSON error, not a bare handshake 403."""
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            message = f"no WebSocket endpoint at /{path[:80]}; audio goes to /v1/sessions/SID/audio"
            await websocket.send_text(ErrorMessage(code="not_found", message=message).model_dump_json())
            await websocket.close(4404, reason="not_found")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process is up and serving (Redis is /readyz's business)."""
        return JSONResponse({"ok": True})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready to take sessions: Redis answers."""
        try:
            await store.ping()
        except (RedisError, OSError) as exc:
            message = f"Redis is unreachable: {exc}"
            return JSONResponse({"ok": False, "status": "unavailable", "message": message}, status_code=503)
        return JSONResponse({"ok": True, "status": "ready"})

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return metrics_response(metrics.registry)

    return app
