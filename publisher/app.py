"""The publisher's HTTP and WebSocket surface: live captions for displays, SRT/WebVTT export, health.

``WS /v1/sessions/{sid}/captions?tracks=ja,en&since=SEQ`` subscribes first, then replays the caption
stream after ``since``, then forwards live events; :mod:`publisher.replay` keeps every final exactly once
and in order per track, :mod:`publisher.hub` shares one subscription per session among the displays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from redis.exceptions import RedisError

from common import keys
from common.schemas import SessionRecord
from common.settings import Settings
from publisher.export import build_cues, rules_for, to_srt, to_vtt
from publisher.hub import CaptionHub, Display
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

CLOSE_TIMEOUT_S = 10.0
"""How long sending a close frame may wait on a backed-up display before its connection is just ended."""

FORMATS = {
    "srt": ("application/x-subrip; charset=utf-8", to_srt),
    "vtt": ("text/vtt; charset=utf-8", to_vtt),
}


class _Unreadable(Exception):
    """The session hash holds a record this version cannot read."""


async def load_record(redis: Any, sid: str) -> SessionRecord | None:
    """The session record, or None when there is no such session."""
    raw = await redis.hget(keys.session(sid), "record")
    if raw is None:
        return None
    try:
        return SessionRecord.model_validate_json(raw)
    except ValidationError as exc:
        log.error("session %s has an unreadable record: %s", sid, exc)
        raise _Unreadable(sid) from exc


def _error(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}


def create_app(settings: Settings, redis: Any) -> FastAPI:
    """The publisher application over an async Redis client (``redis.asyncio.Redis``) the caller owns."""
    hub = CaptionHub(redis, queue_size=settings.display_queue_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await hub.close()

    app = FastAPI(title="wsp publisher", lifespan=lifespan)
    app.state.hub = hub

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            return JSONResponse({"status": "unavailable", "message": f"Redis: {exc}"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/sessions/{sid}/captions.srt")
    async def export_srt(sid: str, track: str | None = None) -> Response:
        return await _export(redis, sid, track, "srt")

    @app.get("/v1/sessions/{sid}/captions.vtt")
    async def export_vtt(sid: str, track: str | None = None) -> Response:
        return await _export(redis, sid, track, "vtt")

    @app.websocket("/v1/sessions/{sid}/captions")
    async def captions(websocket: WebSocket, sid: str) -> None:
        await websocket.accept()
        await _display(websocket, redis, hub, sid)

    return app


async def _export(redis: Any, sid: str, track: str | None, fmt: Literal["srt", "vtt"]) -> Response:
    if not keys.SESSION_ID.fullmatch(sid):
        return JSONResponse(_error("bad_session_id", f"{sid[:80]!r} is not a session id"), status_code=400)
    try:
        record = await load_record(redis, sid)
        if record is None:
            return JSONResponse(_error("unknown_session", f"there is no session {sid!r}"), status_code=404)
        names = [t.name for t in record.tracks]
        chosen = track or names[0]
        if chosen not in names:
            message = f"session {sid!r} has no track {chosen[:40]!r}; it has {', '.join(names)}"
            return JSONResponse(_error("unknown_track", message), status_code=400)
        finals = await CaptionHistory(redis, sid).finals(chosen)
    except _Unreadable:
        return JSONResponse(_error("unreadable_session", "the session record cannot be read"), 500)
    except (RedisError, OSError) as exc:
        log.warning("export of %s failed: %s", sid, exc)
        return JSONResponse(_error("unavailable", "caption storage is unreachable, try again"), 503)
    media_type, write = FORMATS[fmt]
    body = write(build_cues(finals, rules_for(chosen)))
    headers = {"Content-Disposition": f'inline; filename="{sid}-{chosen}.{fmt}"'}
    return Response(body, media_type=media_type, headers=headers)


async def _refuse(websocket: WebSocket, close_code: int, code: str, message: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_json(_error(code, message))
        await websocket.close(close_code, message[:120])


async def _display(websocket: WebSocket, redis: Any, hub: CaptionHub, sid: str) -> None:
    if not keys.SESSION_ID.fullmatch(sid):
        await _refuse(websocket, 4400, "bad_session_id", f"{sid[:80]!r} is not a session id")
        return
    try:
        record = await load_record(redis, sid)
    except _Unreadable:
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
    try:
        display = await hub.join(sid)
    except (RedisError, OSError):
        await _refuse(websocket, 1011, "unavailable", "caption feed is unreachable, try again")
        return
    try:
        await _serve(websocket, display, CaptionHistory(redis, sid), DisplayFeed(request, names))
    finally:
        hub.leave(display)


async def _serve(websocket: WebSocket, display: Display, history: CaptionHistory, feed: DisplayFeed) -> None:
    """Run one display until it leaves, is dropped, or the session ends."""
    pump = asyncio.create_task(_pump(websocket, display, history, feed))
    client = asyncio.create_task(_until_disconnect(websocket))
    shut = asyncio.create_task(display.closed.wait())
    done, _ = await asyncio.wait({pump, client, shut}, return_when=asyncio.FIRST_COMPLETED)
    for task in (pump, client, shut):
        task.cancel()
    await asyncio.gather(pump, client, shut, return_exceptions=True)
    if client in done:
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
            log.warning("display of %s: caption storage failed: %s", display.sid, error)
        else:
            log.error("display of %s failed", display.sid, exc_info=error)
        code, reason = 1011, "caption feed failed"
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT_S)


async def _until_disconnect(websocket: WebSocket) -> None:
    """Displays only listen; whatever they send is ignored until they go."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _pump(websocket: WebSocket, display: Display, history: CaptionHistory, feed: DisplayFeed) -> None:
    async for event in replay(history, feed):
        await websocket.send_text(event.model_dump_json())
    while not feed.finished:
        live = await display.queue.get()
        verdict = feed.live(live.event)
        if verdict is Verdict.SEND:
            await websocket.send_text(live.text)
        elif verdict is Verdict.GAP:
            for event in await catch_up(history, feed, live.event):
                await websocket.send_text(event.model_dump_json())
