"""The publisher's HTTP and WebSocket surface: live captions for displays, SRT/WebVTT export, health.

``WS /v1/sessions/{sid}/captions?tracks=ja,en&since=SEQ`` subscribes first, then replays the caption
stream after ``since``, then forwards live events; :mod:`publisher.replay` keeps every final exactly once
and in order per track, :mod:`publisher.hub` shares one subscription per session among the displays.
Every read needs ``?token=`` with the session's read or audio token, or the API key (:mod:`common.auth`).

A display is dropped as too slow (4408, counted) when its queue of live events overflows, or when it
leaves a keepalive ping unanswered for ``WSP_DISPLAY_TIMEOUT_S`` (it reads nothing; see
:mod:`publisher.server`). A session has at most ``WSP_MAX_DISPLAYS_PER_SESSION`` displays per process.
Responses say ``nosniff``; the display page may be framed (OBS browser sources, venue pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from common import auth, http_headers
from common.contract import keys, sessions
from common.contract.captions import Caption
from common.http_headers import FixedHeaders
from common.metrics import metrics_response
from common.schemas import ErrorMessage, SessionRecord
from common.settings import Settings
from publisher.export import build_bilingual_cues, build_cues, rules_for, to_srt, to_vtt
from publisher.hub import CLOSE_TOO_SLOW, CaptionHub, Display
from publisher.metrics import PublisherMetrics
from publisher.pages import add_display_page, add_short_links
from publisher.replay import (
    BadQuery,
    CaptionHistory,
    DisplayFeed,
    Verdict,
    catch_up,
    parse_request,
    replay,
)

log = logging.getLogger(__name__)

RESPONSE_HEADERS = {**http_headers.NO_SNIFF, **http_headers.NO_REFERRER}
"""Headers of every publisher response (no framing rule: the display page is embedded on purpose)."""
CLOSE_TOO_MANY = 4429
"""WebSocket close code of a display refused because its session has its most displays here."""

CLOSE_TIMEOUT_S = 10.0
"""How long sending a close frame may wait on a backed-up display before its connection is just ended."""

FORMATS = {
    "srt": ("application/x-subrip; charset=utf-8", to_srt),
    "vtt": ("text/vtt; charset=utf-8", to_vtt),
}


async def load_record(redis: Any, sid: str) -> SessionRecord | None:
    """The session record, or None when there is no such session."""
    view = await sessions.load(redis, sid)
    return None if view is None else view.record


def _error(code: str, message: str) -> dict[str, str]:
    """The body of an HTTP or WebSocket refusal (:class:`~common.schemas.ErrorMessage`)."""
    return ErrorMessage(code=code, message=message).model_dump()


def create_app(settings: Settings, redis: Any) -> FastAPI:
    """The publisher application over an async Redis client (``redis.asyncio.Redis``) the caller owns."""
    metrics = PublisherMetrics()
    hub = CaptionHub(redis, queue_size=settings.display_queue_size, metrics=metrics)
    api_key = settings.api_key_value()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await hub.close()

    docs = {} if settings.api_docs else {"docs_url": None, "redoc_url": None}
    app = FastAPI(title="wsp publisher", lifespan=lifespan, **docs)  # type: ignore[arg-type]
    app.state.hub = hub
    app.add_middleware(FixedHeaders, headers=RESPONSE_HEADERS)
    add_display_page(app)
    add_short_links(app, redis)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process is up and serving (Redis is /readyz's business)."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready for displays: Redis answers."""
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            message = f"Redis is unreachable: {exc}"
            return JSONResponse({"status": "unavailable", "message": message}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return metrics_response(metrics.registry)

    @app.get("/v1/sessions/{sid}/captions.srt")
    async def export_srt(sid: str, request: Request, track: str | None = None) -> Response:
        return await _export(redis, sid, track, "srt", read_access(request, api_key))

    @app.get("/v1/sessions/{sid}/captions.vtt")
    async def export_vtt(sid: str, request: Request, track: str | None = None) -> Response:
        return await _export(redis, sid, track, "vtt", read_access(request, api_key))

    @app.get("/v1/sessions/{sid}/record")
    async def session_record(sid: str, request: Request) -> Response:
        """The session's record (title, language, tracks, status; no secrets) for a display's title."""
        return await _record(redis, sid, read_access(request, api_key))

    @app.websocket("/v1/sessions/{sid}/captions")
    async def captions(websocket: WebSocket, sid: str) -> None:
        await websocket.accept()
        access = read_access(websocket, api_key)
        await _display(websocket, redis, hub, sid, access, settings.max_displays_per_session)

    return app


@dataclass(frozen=True)
class ReadAccess:
    """What a request to read a session presents: its token (or none) and the deployment's API key."""

    token: str | None
    api_key: str | None

    async def denied(self, redis: Any, sid: str) -> auth.Denied | None:
        """None when the token may read session ``sid`` (a valid id); else why not."""
        return await auth.authorize(
            self.token, auth.Scope.READ, self.api_key, lambda: sessions.token_hashes(redis, sid)
        )


def read_access(connection: HTTPConnection, api_key: str | None) -> ReadAccess:
    """The credentials of a request or WebSocket: ``?token=`` or ``Authorization: Bearer``."""
    return ReadAccess(auth.presented_token(connection.query_params, connection.headers), api_key)


async def _record(redis: Any, sid: str, access: ReadAccess) -> Response:
    if not keys.SESSION_ID.fullmatch(sid):
        return JSONResponse(_error("bad_session_id", f"{sid[:80]!r} is not a session id"), status_code=400)
    try:
        denied = await access.denied(redis, sid)
        record = None if denied is not None else await load_record(redis, sid)
    except sessions.UnreadableSession:
        return JSONResponse(_error("unreadable_session", "the session record cannot be read"), 500)
    except (RedisError, OSError):
        return JSONResponse(_error("unavailable", "session storage is unreachable, try again"), 503)
    if denied is not None:
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(_error(auth.UNAUTHORIZED, denied.message), status_code=401, headers=headers)
    if record is None:
        return JSONResponse(_error("unknown_session", f"there is no session {sid!r}"), status_code=404)
    return JSONResponse(record.model_dump(exclude={"glossary"}))


async def _export(
    redis: Any, sid: str, track: str | None, fmt: Literal["srt", "vtt"], access: ReadAccess
) -> Response:
    if not keys.SESSION_ID.fullmatch(sid):
        return JSONResponse(_error("bad_session_id", f"{sid[:80]!r} is not a session id"), status_code=400)
    try:
        denied = await access.denied(redis, sid)
        if denied is not None:
            return JSONResponse(
                _error(auth.UNAUTHORIZED, denied.message),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        record = await load_record(redis, sid)
        if record is None:
            return JSONResponse(_error("unknown_session", f"there is no session {sid!r}"), status_code=404)
        names = [t.name for t in record.tracks]
        chosen = track or names[0]
        wanted = [name for name in re.split(r"[+, ]", chosen) if name] or [names[0]]
        unknown = next((name for name in wanted if name not in names), None)
        if unknown is not None or len(wanted) > 2:
            what = f"no track {unknown[:40]!r}" if unknown is not None else "more than two tracks asked for"
            message = f"session {sid!r} has {what}; it has {', '.join(names)} (one, or two as ja+en)"
            return JSONResponse(_error("unknown_track", message), status_code=400)
        history = CaptionHistory(redis, sid)
        finals = [await history.finals(name) for name in wanted]
    except sessions.UnreadableSession:
        return JSONResponse(_error("unreadable_session", "the session record cannot be read"), 500)
    except (RedisError, OSError) as exc:
        log.warning("export of %s failed: %s", sid, exc, extra={"session": sid})
        return JSONResponse(_error("unavailable", "caption storage is unreachable, try again"), 503)
    media_type, write = FORMATS[fmt]
    if len(wanted) == 2:  # bilingual: each sentence of the first track above its translation in the second
        cues = build_bilingual_cues(finals[0], finals[1], rules_for(wanted[0]), rules_for(wanted[1]))
    else:
        cues = build_cues(finals[0], rules_for(wanted[0]))
    body = write(cues)
    headers = {"Content-Disposition": f'inline; filename="{sid}-{"+".join(wanted)}.{fmt}"'}
    return Response(body, media_type=media_type, headers=headers)


async def _refuse(websocket: WebSocket, close_code: int, code: str, message: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(ErrorMessage(code=code, message=message).model_dump_json())
        await websocket.close(close_code, message[:120])


async def _display(
    websocket: WebSocket, redis: Any, hub: CaptionHub, sid: str, access: ReadAccess, most: int
) -> None:
    if not keys.SESSION_ID.fullmatch(sid):
        await _refuse(websocket, 4400, "bad_session_id", f"{sid[:80]!r} is not a session id")
        return
    try:
        denied = await access.denied(redis, sid)
        if denied is not None:
            await _refuse(websocket, auth.CLOSE_UNAUTHORIZED, auth.UNAUTHORIZED, denied.message)
            return
        record = await load_record(redis, sid)
    except sessions.UnreadableSession:
        await _refuse(websocket, 1011, "unreadable_session", "the session record cannot be read")
        return
    except (RedisError, OSError):
        await _refuse(websocket, 1011, "unavailable", "caption storage is unreachable, try again")
        return
    if record is None:
        await _refuse(websocket, 4404, "unknown_session", f"there is no session {sid!r}")
        return
    names = [t.name for t in record.tracks]
    params = websocket.query_params
    try:
        request = parse_request(params.get("tracks"), params.get("since"), names)
    except BadQuery as exc:
        await _refuse(websocket, 4400, "bad_request", str(exc))
        return
    if hub.displays(sid) >= most:
        hub.metrics.displays_refused.labels("too_many_displays").inc()
        message = (
            f"session {sid!r} already has {most} displays on this publisher (WSP_MAX_DISPLAYS_PER_SESSION); "
            "try again later or ask the operator for more"
        )
        await _refuse(websocket, CLOSE_TOO_MANY, "too_many_displays", message)
        return
    try:
        display = await hub.join(sid)  # counted at once: no other display slips in while it subscribes
    except (RedisError, OSError):
        await _refuse(websocket, 1011, "unavailable", "caption feed is unreachable, try again")
        return
    try:
        await _serve(websocket, display, CaptionHistory(redis, sid), DisplayFeed(request, names), hub.metrics)
    finally:
        hub.leave(display)


async def _serve(
    websocket: WebSocket,
    display: Display,
    history: CaptionHistory,
    feed: DisplayFeed,
    metrics: PublisherMetrics,
) -> None:
    """Run one display until it leaves, is dropped, or the session ends."""
    pump = asyncio.create_task(_pump(websocket, display, history, feed, metrics))
    client = asyncio.create_task(_until_disconnect(websocket))
    shut = asyncio.create_task(display.closed.wait())
    done, _ = await asyncio.wait({pump, client, shut}, return_when=asyncio.FIRST_COMPLETED)
    for task in (pump, client, shut):
        task.cancel()
    await asyncio.gather(pump, client, shut, return_exceptions=True)
    if client in done:
        if not client.cancelled() and client.exception() is None and client.result() == CLOSE_TOO_SLOW:
            log.warning(
                "display of session %s dropped: it answered no ping (it reads nothing)",
                display.sid,
                extra={"session": display.sid},
            )
            metrics.displays_dropped.inc()
        return
    if display.closed.is_set():
        code, reason = display.close_code, display.close_reason
    elif pump.cancelled() or pump.exception() is None:
        code, reason = 1000, "session ended"
    else:
        error = pump.exception()
        if isinstance(error, WebSocketDisconnect | OSError):
            return
        if isinstance(error, RedisError):
            log.warning(
                "display of %s: caption storage failed: %s",
                display.sid,
                error,
                extra={"session": display.sid},
            )
        else:
            log.error("display of %s failed", display.sid, exc_info=error, extra={"session": display.sid})
        code, reason = 1011, "caption feed failed"
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT_S)


async def _until_disconnect(websocket: WebSocket) -> int:
    """Displays only listen; whatever they send is ignored until they go. The close code."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return int(message.get("code", 1000))


async def _pump(
    websocket: WebSocket,
    display: Display,
    history: CaptionHistory,
    feed: DisplayFeed,
    metrics: PublisherMetrics,
) -> None:
    async def send(caption: Caption) -> None:
        await websocket.send_text(caption.text)  # the event's JSON as the worker stored it
        metrics.delivered(caption.event.type)

    async def send_missed() -> None:
        async for caption in replay(history, feed):
            await send(caption)

    await send_missed()
    while not feed.finished:
        live = (await display.queue.get()).caption
        if live is None:  # the live subscription was made again: read what it may have missed
            await send_missed()
            continue
        verdict = feed.live(live.event)
        if verdict is Verdict.SEND:
            await send(live)
        elif verdict is Verdict.GAP:
            metrics.gap_repairs.inc()
            for caption in await catch_up(history, feed, live):
                await send(caption)
