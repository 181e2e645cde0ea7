"""The ingest HTTP service: create sessions, look them up, end them, and take their audio (see
:mod:`ingest.audio_ws`).

``create_app(settings, redis)`` builds the FastAPI application around a ``redis.asyncio`` client that the
caller owns (and closes). Who may create sessions, and how many, is :mod:`ingest.admission`'s business;
Redis memory is watched by :mod:`ingest.memory`. Every response says ``nosniff`` and may not be framed
by another site (the microphone page holds the session's controls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common import auth, http_headers
from common.audio import SAMPLE_RATE
from common.contract import clients, keys
from common.http_headers import FixedHeaders
from common.metrics import metrics_response
from common.options import WHISPER_LANGUAGES
from common.schemas import (
    DisplayLinks,
    DisplayLinksRequest,
    ErrorMessage,
    SessionCreate,
    SessionCreated,
    SessionLinks,
    SessionList,
    SessionRecord,
    SessionState,
    TrackSpec,
)
from common.settings import Settings
from ingest.admission import RateLimiter, origin_refusal
from ingest.audio_ws import STORAGE_FULL, AudioLimits, audio_router
from ingest.displays import build_links
from ingest.memory import MemoryWatch
from ingest.metrics import IngestMetrics
from ingest.pages import add_microphone_page
from ingest.store import AtCapacity, ClientQuota, SessionMissing, SessionStore, TooManyForClient

log = logging.getLogger(__name__)

MAX_CREATE_BODY_BYTES = 64 * 1024
"""Largest ``POST /v1/sessions`` body: a session's settings (title, glossary, tracks) fit many times over."""

RESPONSE_HEADERS = {**http_headers.NO_SNIFF, **http_headers.NO_REFERRER, **http_headers.NO_FRAMING}
"""Headers of every ingest response."""

MAX_DISPLAYS_BODY_BYTES = 4096
"""Largest ``POST /v1/sessions/{sid}/displays`` body (a token)."""


class ApiError(Exception):
    """An HTTP error with a short code and a sentence for the client (and headers, e.g. Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


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


def _operator_only(api_key: str | None, what: str) -> str:
    if api_key is None:
        return f"{what} needs the API key, and this deployment has none: set WSP_API_KEY"
    return f"{what} needs the API key: Authorization: Bearer <key>"


async def _state(store: SessionStore, request: Request, settings: Settings, sid: str) -> SessionState:
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
    metrics = IngestMetrics()
    memory = MemoryWatch(redis, settings.redis_memory_high, metrics)
    limiter = RateLimiter(settings.client_sessions_per_minute)
    allowed_origins = settings.allowed_origin_list()
    client_keep_ms = round(
        1000 * (settings.max_session_s + settings.session_idle_s + settings.session_start_s)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watch = asyncio.create_task(memory.run(), name="redis-memory")
        try:
            yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    docs = {} if settings.api_docs else {"docs_url": None, "redoc_url": None}
    app = FastAPI(title="wsp ingest", version="1", lifespan=lifespan, **docs)  # type: ignore[arg-type]
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    app.state.memory = memory
    if allowed_origins:  # pages of these origins may call the API (their preflights are answered)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(FixedHeaders, headers=RESPONSE_HEADERS)  # the outermost: on every response
    add_microphone_page(app)
    app.include_router(
        audio_router(
            store,
            AudioLimits(
                settings.max_frame_bytes,
                settings.audio_stream_max_s,
                round(settings.max_session_s * SAMPLE_RATE),
                max_speed=settings.audio_max_speed,
                burst_s=settings.audio_burst_s,
                accept_fast_audio=settings.accept_fast_audio,
            ),
            api_key,
            metrics=metrics,
            memory=memory,
        )
    )

    def refuse_creation(status: int, code: str, message: str, retry_after_s: float | None = None) -> ApiError:
        metrics.sessions_refused.labels(code).inc()
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))} if retry_after_s is not None else {}
        return ApiError(status, code, message, headers)

    def check_origin(request: Request) -> None:
        refusal = origin_refusal(request.headers, allowed_origins)
        if refusal is not None:
            raise ApiError(403, "origin_not_allowed", refusal)

    def client_address(request: Request) -> str:
        return request.client.host if request.client is not None else "unknown"

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        response.headers.update(exc.headers)
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
        if isinstance(exc, OutOfMemoryError):
            log.warning("redis is full on %s %s: %s", request.method, request.url.path, exc)
            return error_response(503, STORAGE_FULL, "session storage is full; try again in a minute")
        log.error("redis failed on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "unavailable", "session storage is unavailable; try again shortly")

    @app.post("/v1/sessions", status_code=201)
    async def create_session(request: Request) -> SessionCreated:
        """The key and the origin are checked before the body is even read; the body is read up to a
        bound. Without the key, the client's address is held to its rate and its count of open sessions."""
        keyed = auth.is_api_key(auth.bearer(request.headers.get("authorization")), api_key)
        if api_key and not keyed:
            raise ApiError(
                401, auth.UNAUTHORIZED, "creating a session needs the API key: Authorization: Bearer <key>"
            )
        check_origin(request)
        quota = None
        if not keyed:
            client = client_address(request)
            wait = limiter.take(client)
            if wait:
                raise refuse_creation(
                    429,
                    "rate_limited",
                    f"this address may create {settings.client_sessions_per_minute:g} sessions a minute; "
                    f"try again in {math.ceil(wait)} s",
                    wait,
                )
            quota = ClientQuota(clients.client_id(client), settings.max_sessions_per_client, client_keep_ms)
        if memory.high:
            raise refuse_creation(503, STORAGE_FULL, memory.describe())
        body = parse_create(await read_body(request, MAX_CREATE_BODY_BYTES))
        sid = new_session_id()
        record = build_record(body, sid, time.time())
        tokens = auth.issue()
        try:
            await store.create(record, tokens.hashes(), settings.max_sessions, quota)
        except AtCapacity as exc:
            raise refuse_creation(503, "at_capacity", str(exc)) from exc
        except TooManyForClient as exc:
            raise refuse_creation(429, "too_many_sessions", str(exc)) from exc
        metrics.sessions_created.inc()
        return SessionCreated(
            record=record,
            audio_token=tokens.audio,
            read_token=tokens.read,
            **session_links(request, settings, sid, tokens),
        )

    @app.get("/v1/sessions")
    async def list_sessions(request: Request) -> SessionList:
        """Every open session, for the operator (the API key)."""
        if not auth.is_api_key(auth.bearer(request.headers.get("authorization")), api_key):
            raise ApiError(401, auth.UNAUTHORIZED, _operator_only(api_key, "listing sessions"))
        return SessionList(sessions=await store.open_sessions())

    @app.post("/v1/sessions/{sid}/end")
    async def end_session(sid: str, request: Request) -> SessionState:
        """End a session's audio, whoever streams it: the operator (the API key), or whoever holds its
        audio token. Its captions are flushed and its displays get ``end``, as after the sender's end."""
        sid = _session_id(sid)
        check_origin(request)
        token = auth.presented_token(request.query_params, request.headers)
        _require(await auth.authorize(token, auth.Scope.AUDIO, api_key, lambda: store.token_hashes(sid)))
        try:
            await store.end_for_operator(sid)
        except SessionMissing as exc:
            raise ApiError(404, "unknown_session", str(exc)) from exc
        return await _state(store, request, settings, sid)

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
        return await _state(store, request, settings, sid)

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
