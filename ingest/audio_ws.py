"""The audio WebSocket protocol: ``WS /v1/sessions/{sid}/audio``.

0. The URL carries the session's audio token (or the deployment's API key): ``?token=...``; without it
   the first message is answered with an ``unauthorized`` error and close code 4401.
1. The client sends one JSON text message, :class:`~common.schemas.AudioStart`. The server answers
   :class:`~common.schemas.AudioReady` ``{"type": "ready", "samples": N}`` (N: samples already accepted,
   so a client that reconnects knows where the session stands; its next frame continues at sample N).
   A start that asks for ``"pace": "fast"`` (recorded audio sent faster than real time) is answered with
   the pace granted, ``"fast"`` or ``"realtime"`` (``WSP_ACCEPT_FAST_AUDIO``, or the API key); a client
   refused keeps real time.
2. The client sends binary frames of PCM s16le, 16 kHz, mono. Each accepted frame is appended to the
   session's audio stream; about once a second of audio the server says :class:`~common.schemas.AudioAck`
   ``{"type": "ack", "samples": N}``.
3. The client sends :class:`~common.schemas.AudioEnd` ``{"type": "end"}``; the server appends the single
   ``end`` entry, answers :class:`~common.schemas.AudioEnded` ``{"type": "ended", "samples": N}`` and
   closes with 1000.

Pace: a session's audio may run ahead of wall-clock time by at most ``WSP_AUDIO_BURST_S`` and then go
at most ``WSP_AUDIO_MAX_SPEED`` times real time (a token bucket kept with the session, so reconnecting
does not reset it); a frame beyond that is refused (``too_fast``, 4429) and not stored. A connection
with the API key, or one whose start asked for ``"pace": "fast"`` while ``WSP_ACCEPT_FAST_AUDIO`` is on,
is not held to it; the ``ready`` answer to a start that asked says which pace was granted. While Redis
memory is above its mark (:mod:`ingest.memory`) frames are refused with ``storage_full`` and 1013.

A client that disconnects without ``end`` may reconnect and go on. A new connection that starts the same
session takes it over: the older one is refused on its next frame. Any refusal is an
:class:`~common.schemas.ErrorMessage` ``{"type": "error", "code": ..., "message": ...}`` followed by a
close with a 4xxx code; it ends only the connection that caused it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.websockets import WebSocketState

from common import auth
from common.audio import SAMPLE_RATE
from common.contract import keys
from common.contract.sessions import Pace
from common.schemas import AudioAck, AudioEnd, AudioEnded, AudioPace, AudioReady, AudioStart, ErrorMessage
from ingest.memory import MemoryWatch
from ingest.metrics import IngestMetrics
from ingest.store import (
    BYTES_PER_SAMPLE,
    SessionClosed,
    SessionMissing,
    SessionStore,
    TooFast,
    WriterReplaced,
    stream_maxlen,
)

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
"""A connection that has not sent its start message within this time is refused."""

ACK_EVERY_SAMPLES = SAMPLE_RATE
"""The server acknowledges accepted audio about once per second of it."""

CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_SESSION = 4404
CLOSE_CONFLICT = 4409
CLOSE_TOO_LARGE = 4413
CLOSE_TOO_FAST = 4429
CLOSE_UNAVAILABLE = 1013
"""Try Again Later: Redis is unreachable for a moment (or full); the client reconnects and goes on."""

STORAGE_FULL = "storage_full"
"""The error code of a refusal while Redis memory is above its mark (or full)."""

MIN_FRAME_COST_S = 0.02
"""A frame counts as at least this much audio against the session's pace and its stream's length, so
that frames of a few samples cannot multiply the stream's entries (and Redis's per-entry overhead)."""


@dataclass(frozen=True)
class AudioLimits:
    """What one audio connection may send, and how much audio its stream keeps."""

    max_frame_bytes: int
    audio_stream_max_s: float
    max_session_samples: int | None = None
    """Most audio one session may send (``WSP_MAX_SESSION_S``); None: no limit."""
    max_speed: float = 0.0
    """Seconds of audio a session may send per second beyond its burst (``WSP_AUDIO_MAX_SPEED``; 0: any)."""
    burst_s: float = 120.0
    """Audio a session may send at once above that pace (``WSP_AUDIO_BURST_S``)."""
    accept_fast_audio: bool = False
    """Whether a start that asks for pace fast is granted it without the API key."""

    def pace(self) -> Pace:
        """The session pace held to connections that were not granted pace fast."""
        return Pace(
            self.max_speed * SAMPLE_RATE,
            round(self.burst_s * SAMPLE_RATE),
            round(MIN_FRAME_COST_S * SAMPLE_RATE),
        )


class Refusal(Exception):
    """Why a connection is closed: a short code and a sentence for the client, and the close code."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


def audio_router(
    store: SessionStore,
    limits: AudioLimits,
    api_key: str | None = None,
    metrics: IngestMetrics | None = None,
    memory: MemoryWatch | None = None,
) -> APIRouter:
    """The audio WebSocket; ``api_key`` (``WSP_API_KEY``) is accepted beside each session's audio token.
    With ``memory``, frames are refused while Redis memory is above its mark."""
    router = APIRouter()
    counters = metrics or IngestMetrics()

    @router.websocket("/v1/sessions/{sid}/audio")
    async def audio(websocket: WebSocket, sid: str) -> None:
        await websocket.accept()
        counters.audio_connections.inc()
        about = {"session": sid[:80]}
        try:
            await _serve(websocket, sid, store, limits, api_key, counters, memory)
        except Refusal as refusal:
            counters.audio_rejected.labels(refusal.code).inc()
            log.info("audio %s refused: %s (%s)", sid[:80], refusal.code, refusal.message, extra=about)
            await _refuse(websocket, refusal)
        except WebSocketDisconnect:
            log.info("audio %s: client disconnected", sid[:80], extra=about)
        except OutOfMemoryError as exc:  # past the mark between two looks at memory: the same answer
            counters.audio_rejected.labels(STORAGE_FULL).inc()
            log.warning("audio %s: redis is full: %s", sid[:80], exc, extra=about)
            message = "the caption store is full: no new audio is taken for now; try again in a minute"
            await _refuse(websocket, Refusal(CLOSE_UNAVAILABLE, STORAGE_FULL, message))
        except RedisError as exc:
            counters.audio_rejected.labels("unavailable").inc()
            log.error("audio %s: redis failed: %s", sid[:80], exc, extra=about)
            message = "session storage is unavailable; reconnect in a few seconds and go on"
            await _refuse(websocket, Refusal(CLOSE_UNAVAILABLE, "unavailable", message))
        finally:
            counters.audio_connections.dec()

    return router


async def _refuse(websocket: WebSocket, refusal: Refusal) -> None:
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    try:
        await websocket.send_text(ErrorMessage(code=refusal.code, message=refusal.message).model_dump_json())
        await websocket.close(refusal.close_code, reason=refusal.code)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        log.debug("could not deliver refusal %s: %s", refusal.code, exc)


async def _reply(websocket: WebSocket, message: BaseModel) -> None:
    """Send one server message; a connection the WebSocket layer has already closed (the client went, or
    sent a frame over its size limit while the service was busy) is a disconnect, not a crash."""
    try:
        await websocket.send_text(message.model_dump_json())
    except RuntimeError as exc:  # starlette and uvicorn say "after sending 'websocket.close'"
        raise WebSocketDisconnect(1006) from exc


async def _receive(websocket: WebSocket, timeout: float | None = None) -> Mapping[str, Any]:
    message: Mapping[str, Any] = await asyncio.wait_for(websocket.receive(), timeout)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


def _parse_start(message: Mapping[str, Any]) -> AudioStart:
    text = message.get("text")
    if text is None:
        raise Refusal(
            CLOSE_BAD_REQUEST,
            "start_required",
            'the first message must be JSON {"type": "start"}, sent before any audio',
        )
    try:
        return AudioStart.model_validate_json(text)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors())
        raise Refusal(CLOSE_BAD_REQUEST, "bad_start", f"invalid start message: {detail}") from exc


def _check_control(text: str) -> None:
    """A text frame after the start must be :class:`AudioEnd`."""
    try:
        AudioEnd.model_validate_json(text)
    except ValidationError as exc:
        raise Refusal(
            CLOSE_BAD_REQUEST,
            "unexpected_message",
            'after the start message, send binary PCM frames or JSON {"type": "end"}',
        ) from exc


def _check_frame(pcm: bytes, limits: AudioLimits) -> None:
    if len(pcm) > limits.max_frame_bytes:
        raise Refusal(
            CLOSE_TOO_LARGE,
            "frame_too_large",
            f"audio frame of {len(pcm)} bytes exceeds the limit of {limits.max_frame_bytes} bytes; "
            "send shorter frames",
        )
    if len(pcm) % BYTES_PER_SAMPLE:
        raise Refusal(
            CLOSE_BAD_REQUEST,
            "odd_frame",
            f"audio frame of {len(pcm)} bytes is not whole PCM s16le samples (needs an even length)",
        )


async def _authorize(websocket: WebSocket, sid: str, store: SessionStore, api_key: str | None) -> bool:
    """Refuse a connection without the session's audio token or the key; True when it has the key."""
    token = auth.presented_token(websocket.query_params, websocket.headers)
    denied = await auth.authorize(token, auth.Scope.AUDIO, api_key, lambda: store.token_hashes(sid))
    if denied is not None:
        raise Refusal(auth.CLOSE_UNAUTHORIZED, auth.UNAUTHORIZED, denied.message)
    return auth.is_api_key(token, api_key)


def _granted(start: AudioStart, keyed: bool, limits: AudioLimits) -> AudioPace:
    """The pace a connection gets: fast with the key, when asked and accepted, or with no bound set."""
    if keyed or not limits.max_speed or (start.pace == "fast" and limits.accept_fast_audio):
        return "fast"
    return "realtime"


def _too_fast(exc: TooFast, sample: int, limits: AudioLimits) -> Refusal:
    now_s = exc.allowed_samples / SAMPLE_RATE
    return Refusal(
        CLOSE_TOO_FAST,
        "too_fast",
        f"audio arrives faster than this session may send it: {limits.burst_s:g} s at once, then "
        f"{limits.max_speed:g} times real time (it may send {now_s:.1f} s now). Nothing from sample {sample} "
        "on was stored: reconnect and go on from the samples 'ready' gives, at real-time pace",
    )


def _check_length(samples: int, limits: AudioLimits) -> None:
    """Refuse a frame that would take the session past its longest allowed audio."""
    if limits.max_session_samples is not None and samples > limits.max_session_samples:
        most_s = limits.max_session_samples / SAMPLE_RATE
        raise Refusal(
            CLOSE_TOO_LARGE,
            "session_too_long",
            f"the session has reached its longest allowed audio ({most_s:g} s); the audio so far is kept: "
            'reconnect and send {"type": "end"} to finish it, or create a new session to go on',
        )


async def _serve(
    websocket: WebSocket,
    sid: str,
    store: SessionStore,
    limits: AudioLimits,
    api_key: str | None,
    metrics: IngestMetrics,
    memory: MemoryWatch | None = None,
) -> None:
    try:
        first = await _receive(websocket, START_TIMEOUT_S)
    except TimeoutError as exc:
        raise Refusal(CLOSE_BAD_REQUEST, "start_timeout", "no start message arrived in time") from exc
    try:  # checked once the client has spoken, so every refusal answers a message
        keys.check_session_id(sid)
    except keys.InvalidId as exc:
        raise Refusal(CLOSE_BAD_REQUEST, "invalid_session_id", str(exc)) from exc
    keyed = await _authorize(websocket, sid, store, api_key)  # before anything says a word about the session
    start = _parse_start(first)
    pace = _granted(start, keyed, limits)
    bound = limits.pace() if pace == "realtime" else None
    writer = uuid.uuid4().hex
    try:
        samples = await store.start(sid, writer)
    except SessionMissing as exc:
        raise Refusal(CLOSE_UNKNOWN_SESSION, "unknown_session", str(exc)) from exc
    except SessionClosed as exc:
        raise Refusal(CLOSE_CONFLICT, "session_ended", str(exc)) from exc
    log.info("audio %s: streaming from sample %d (pace %s)", sid, samples, pace, extra={"session": sid})
    asked = "pace" in start.model_fields_set
    await _reply(websocket, AudioReady(samples=samples, pace=pace if asked else None))

    acked = samples
    smallest_frame = 0
    while True:
        message = await _receive(websocket)
        pcm = message.get("bytes")
        try:
            if pcm is None:
                _check_control(message.get("text") or "")
                total = await store.end(sid, writer)
                await _reply(websocket, AudioEnded(samples=total))
                await websocket.close(1000)
                return
            _check_frame(pcm, limits)
            if not pcm:
                continue
            frame_samples = len(pcm) // BYTES_PER_SAMPLE
            _check_length(samples + frame_samples, limits)
            if memory is not None and memory.high:
                raise Refusal(CLOSE_UNAVAILABLE, STORAGE_FULL, memory.describe())
            smallest_frame = min(smallest_frame or frame_samples, frame_samples)
            counted = max(smallest_frame, round(MIN_FRAME_COST_S * SAMPLE_RATE))
            maxlen = stream_maxlen(limits.audio_stream_max_s, counted)
            samples = await store.append(sid, writer, pcm, maxlen, samples, bound) + frame_samples
            metrics.audio_frames.inc()
            metrics.audio_bytes.inc(len(pcm))
        except SessionMissing as exc:
            raise Refusal(CLOSE_UNKNOWN_SESSION, "unknown_session", str(exc)) from exc
        except SessionClosed as exc:
            raise Refusal(CLOSE_CONFLICT, "session_ended", str(exc)) from exc
        except WriterReplaced as exc:
            raise Refusal(CLOSE_CONFLICT, "replaced", str(exc)) from exc
        except TooFast as exc:
            raise _too_fast(exc, samples, limits) from exc
        if samples - acked >= ACK_EVERY_SAMPLES:
            acked = samples
            await _reply(websocket, AudioAck(samples=samples))
