"""The audio WebSocket seen from the sending side: one session's audio, kept whole across dropped connections.

It speaks :mod:`ingest.audio_ws`: a start message, ``ready`` (how much audio the session already holds),
binary PCM s16le frames, ``ack`` about once per second of audio, ``end`` answered by ``ended``. Every frame
stays in a backlog until the service acknowledges it. When the connection drops, the uplink reconnects with
jittered backoff, learns from ``ready`` where the session stands and sends again whatever the service does
not hold, exactly as the microphone page does (``ingest/static/mic.js``), so no audio is lost or sent twice.
A refusal that another try cannot fix (a wrong token, an unknown or ended session, another sender took the
session over, a frame too large) ends the uplink with :class:`UplinkRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from common.audio import SAMPLE_RATE
from common.errors import WspError
from common.retry import backoff_s

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
BACKLOG_S = 120.0
"""Unacknowledged audio kept while the connection is down (as on the microphone page); older is dropped."""
RETRY_BASE_S = 0.5
RETRY_CAP_S = 5.0
"""Reconnection pauses double from the base up to the cap (jittered), as on the microphone page."""
OPEN_TIMEOUT_S = 10.0
"""Longest wait for the WebSocket handshake and for the service's ``ready``."""
END_TIMEOUT_S = 30.0
"""Longest wait for ``ended`` once ``end`` is sent (the service appends one entry: it answers at once)."""
MAX_MESSAGE_BYTES = 1 << 20
RETRYABLE_REFUSALS = frozenset({"unavailable"})
"""Refusal codes that a later connection may not get (the service's Redis is away for a moment)."""


class UplinkRefused(WspError):
    """The ingest service refused the audio for a reason another connection would not change."""


class _ConnectionLost(Exception):
    """The connection broke, or the service asked to try again later: reconnect."""


class UplinkState(enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDING = "ending"
    ENDED = "ended"


@dataclass(frozen=True)
class Frame:
    offset: int
    """Samples pushed before this frame."""
    pcm: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.pcm) // BYTES_PER_SAMPLE


@dataclass(frozen=True)
class Ack:
    """The service holds the first ``samples`` samples pushed, as of ``at`` (``time.monotonic()``)."""

    at: float
    samples: int


class AudioUplink:
    """``push()`` frames, ``finish()`` once there are no more; ``await run()`` streams them and returns the
    session's total samples once the service confirms the end. Cancelling ``run()`` closes the connection
    without ``end``: the session stays open for another sender.

    ``backlog_s``: unacknowledged audio kept; beyond it the oldest is dropped (a live source cannot wait).
    ``None`` keeps everything (audio that is already in memory). ``max_failures``: consecutive failed
    connections before giving up; ``None`` retries for ever. ``want_fast``: ask to send faster than real
    time; :attr:`fast_granted` says what the service answered.
    """

    def __init__(
        self,
        audio_url: str,
        *,
        backlog_s: float | None = BACKLOG_S,
        max_failures: int | None = None,
        want_fast: bool = False,
        on_ack: Callable[[Ack], None] | None = None,
    ) -> None:
        self._url = audio_url
        self._limit = None if backlog_s is None else round(backlog_s * SAMPLE_RATE)
        self._max_failures = max_failures
        self._want_fast = want_fast
        self._on_ack = on_ack
        self._frames: deque[Frame] = deque()
        self._origin: int | None = None
        """The session's sample count that push offset 0 stands for."""
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._finishing = False
        self.pushed = 0
        self.acked = 0
        self.dropped = 0
        """Samples dropped from a full backlog before the service got them."""
        self.reconnects = 0
        self.state = UplinkState.CONNECTING
        self.last_error = ""
        self.fast_granted: bool | None = None
        self.ready = asyncio.Event()
        """Set once the service has answered ``ready`` the first time."""

    # -- the producer's side --------------------------------------------------------------------
    @property
    def backlog_samples(self) -> int:
        return self.pushed - self._frames[0].offset if self._frames else 0

    def push(self, pcm: bytes) -> None:
        """Queue one frame of PCM s16le (a whole number of samples) to be sent after the previous ones."""
        if not pcm:
            return
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError("a frame must be a whole number of 16-bit samples")
        frame = Frame(self.pushed, pcm)
        self._frames.append(frame)
        self.pushed = frame.end
        while self._limit is not None and len(self._frames) > 1 and self.backlog_samples > self._limit:
            lost = self._frames.popleft()
            self.dropped += lost.end - lost.offset
        if self._full(0):
            self._room.clear()
        self._wake.set()

    async def wait_for_room(self, samples: int) -> None:
        """Until the backlog can take ``samples`` more without dropping any (a source that can wait)."""
        while self._full(samples):
            self._room.clear()
            await self._room.wait()

    def finish(self) -> None:
        """No more frames: send ``end`` once everything pushed is sent."""
        self._finishing = True
        self._wake.set()

    def _full(self, more: int) -> bool:
        return self._limit is not None and self.backlog_samples + more > self._limit

    # -- the connection ---------------------------------------------------------------------------
    async def run(self) -> int:
        failures = 0
        while True:
            self.state = UplinkState.CONNECTING if self._origin is None else UplinkState.RECONNECTING
            streamed = False
            try:
                async with connect(self._url, max_size=MAX_MESSAGE_BYTES, open_timeout=OPEN_TIMEOUT_S) as ws:
                    streamed = await self._start(ws)
                    total = await self._stream(ws)
                self.state = UplinkState.ENDED
                return total
            except InvalidURI as exc:
                raise UplinkRefused(f"not a WebSocket address: {exc}") from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status < 500:
                    raise UplinkRefused(f"ingest answered HTTP {status} for the audio address") from exc
                error: Exception = exc
            except (_ConnectionLost, ConnectionClosed, OSError, TimeoutError) as exc:
                error = exc
            failures = 1 if streamed else failures + 1
            self.reconnects += 1
            self.last_error = str(error) or type(error).__name__
            if self._max_failures is not None and failures > self._max_failures:
                raise WspError(f"lost the connection to ingest {failures} times; last: {self.last_error}")
            self.state = UplinkState.RECONNECTING
            log.warning("audio connection lost (%s); reconnecting", self.last_error)
            await asyncio.sleep(backoff_s(failures, RETRY_BASE_S, RETRY_CAP_S))

    async def _start(self, ws: ClientConnection) -> bool:
        start: dict[str, Any] = {"type": "start", "sample_rate": SAMPLE_RATE}
        if self._want_fast:
            start["pace"] = "fast"
        await ws.send(json.dumps(start))
        ready = _check(json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S)))
        if ready.get("type") != "ready":
            raise UplinkRefused(f"ingest answered {ready!r} instead of ready")
        samples = int(ready["samples"])
        if self._origin is None:
            self._origin = samples
            if self._want_fast:
                self.fast_granted = ready.get("pace") == "fast"
        held = samples - self._origin
        first = self._frames[0].offset if self._frames else self.pushed
        if held < first:  # audio dropped from a full backlog never reached the service: close the gap
            log.warning("%.1f s of audio were dropped while ingest was away", (first - held) / SAMPLE_RATE)
            self._origin = samples - first
        elif held > self.pushed:  # another sender went on meanwhile: continue after what it sent
            log.warning("the session grew by %d samples from another sender", held - self.pushed)
            self._origin = samples - self.pushed
        self._acknowledged(samples)
        self.state = UplinkState.ENDING if self._finishing else UplinkState.STREAMING
        self.ready.set()
        return True

    async def _stream(self, ws: ClientConnection) -> int:
        assert self._origin is not None
        sent = self.acked
        reader = asyncio.create_task(self._read(ws))
        try:
            while True:
                self._wake.clear()
                for frame in [f for f in self._frames if f.end > sent]:
                    skip = max(0, sent - frame.offset) * BYTES_PER_SAMPLE
                    await ws.send(frame.pcm[skip:] if skip else frame.pcm)
                    sent = frame.end
                if reader.done():
                    return reader.result()
                if self._finishing and sent >= self.pushed:
                    self.state = UplinkState.ENDING
                    await ws.send(json.dumps({"type": "end"}))
                    return await asyncio.wait_for(reader, END_TIMEOUT_S)
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waker, reader}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self, ws: ClientConnection) -> int:
        """Acks until ``ended`` (its total samples); a refusal or a closed connection raises."""
        async for raw in ws:
            message = _check(json.loads(raw))
            if message.get("type") == "ack":
                self._acknowledged(int(message["samples"]))
            elif message.get("type") == "ended":
                self._acknowledged(int(message["samples"]))
                return int(message["samples"])
        raise _ConnectionLost("ingest closed the audio connection")

    def _acknowledged(self, samples: int) -> None:
        assert self._origin is not None
        held = samples - self._origin
        while self._frames and self._frames[0].end <= held:
            self._frames.popleft()
        if held > self.acked:
            self.acked = held
            if self._on_ack is not None:
                self._on_ack(Ack(time.monotonic(), held))
        if not self._full(0):
            self._room.set()


def _check(message: dict[str, Any]) -> dict[str, Any]:
    """The message itself, unless it is a refusal: then the right exception."""
    if message.get("type") != "error":
        return message
    code, text = str(message.get("code")), str(message.get("message"))
    if code in RETRYABLE_REFUSALS:
        raise _ConnectionLost(f"{text} ({code})")
    raise UplinkRefused(f"ingest refused the audio: {text} ({code})")
