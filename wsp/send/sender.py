"""From a source to a session: read the source in a thread, cut its audio into frames, pace recordings,
hand the frames to the uplink (:mod:`wsp.uplink`), and keep going through drops on either side.

- The source side: a source that cannot be opened is tried :attr:`SendOptions.open_attempts` times, then
  the command fails. Once it has delivered audio, a drop (an encoder restarted, a network blip, a card
  unplugged) is retried for ever with backoff, into the same session. A recording that drops is read
  again from the start and what was already sent is skipped, so nothing is sent twice.
- The ingest side: the uplink keeps unacknowledged audio and sends it again after a reconnect.
- A live source (a stream, a card) is sent as it comes. A recording is paced in real time (each frame
  leaves when its last sample is due) unless the command asked for ``--as-fast-as-possible`` and the
  service granted it; then it goes as fast as the service acknowledges it.
- :meth:`Sender.stop` (the first Ctrl-C) stops the source, sends what it has and ends the session;
  :meth:`Sender.abandon` (the second) closes the connection and leaves the session open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import resource
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.audio import SAMPLE_RATE
from common.retry import backoff_s
from wsp.send.meter import LevelWatch, MeterReading
from wsp.send.sources import Source, SourceError, SourceUnavailable
from wsp.uplink import Ack, AudioUplink

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
FRAME_S = 0.1
"""Audio per WebSocket frame: a frame leaves once full, so this is the delay framing adds at most."""
SOURCE_OPEN_ATTEMPTS = 5
"""Tries to open a source before the command gives up (an address that is wrong, an encoder not started)."""
SOURCE_RETRY_BASE_S = 1.0
SOURCE_RETRY_CAP_S = 10.0
"""Pauses between tries to reach a source double from the base up to the cap (jittered)."""
QUEUE_CHUNKS = 64
"""Decoded chunks waiting for the sender: a recording decoded ahead waits here, a few seconds at most."""
REANCHOR_S = 1.0
"""A recording that fell behind its real-time schedule by more than this (the service was away and the
backlog full) continues at real-time pace from where it is, instead of rushing to catch up."""
POST_POLL_S = 0.25
"""How often the source thread, waiting for room in the queue, checks whether the command is stopping."""
THREAD_STOP_S = 2.0
"""How long a stopping command waits for the source thread (it may sit in a blocking read)."""


class SourceState(enum.Enum):
    OPENING = "opening"
    RUNNING = "running"
    RETRYING = "retrying"
    ENDED = "ended"


@dataclass(frozen=True)
class SendOptions:
    frame_s: float = FRAME_S
    fast: bool = False
    """Send a recording faster than real time, if the service grants it."""
    open_attempts: int = SOURCE_OPEN_ATTEMPTS


@dataclass
class SendStatus:
    """What the terminal shows; written by the sender (and its source thread), read by the display."""

    source: str
    source_state: SourceState = SourceState.OPENING
    source_note: str = ""
    source_drops: int = 0
    live: bool | None = None
    paced: bool | None = None
    """Whether a recording is sent in real time (None until the service has answered)."""
    meter: MeterReading | None = None
    warnings: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    overflows: int = 0


@dataclass(frozen=True)
class SendResult:
    ended: bool
    """True when the service confirmed the end of the session's audio; False when it was left open."""
    samples: int
    """Samples this sender had the service acknowledge."""
    delays_s: list[float]
    """For each acknowledgement: from when its last sample came from the source to the ack."""
    cpu_s: float
    wall_s: float
    source_drops: int
    reconnects: int
    dropped_samples: int
    acks: list[Ack] = field(default_factory=list)
    """Every acknowledgement, with its ``time.monotonic()``: benchmarks compare it with the source's clock."""

    def figures(self) -> dict[str, Any]:
        """The run in numbers: audio, the delay from source to acknowledgement (p50/p90), CPU."""
        delays = np.asarray(self.delays_s, dtype=float)
        p50, p90 = np.percentile(delays, [50, 90]) if delays.size else (float("nan"), float("nan"))
        return {
            "ended": self.ended,
            "audio_s": round(self.samples / SAMPLE_RATE, 3),
            "acks": int(delays.size),
            "delay_p50_s": round(float(p50), 4),
            "delay_p90_s": round(float(p90), 4),
            "delay_max_s": round(float(delays.max()), 4) if delays.size else float("nan"),
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
            "cpu_percent": round(100 * self.cpu_s / self.wall_s, 2) if self.wall_s else 0.0,
            "source_drops": self.source_drops,
            "reconnects": self.reconnects,
            "dropped_s": round(self.dropped_samples / SAMPLE_RATE, 3),
            "acks_at": [[round(a.at, 4), a.samples] for a in self.acks],
        }


@dataclass(frozen=True)
class _Chunk:
    pcm: bytes
    at: float
    """``time.monotonic()`` when the source handed it over."""


@dataclass(frozen=True)
class _Opened:
    live: bool


class _Dropped:
    """The source dropped: what was read so far is complete, send it without waiting for a full frame."""


class _End:
    """The source has no more audio (a recording's end, or the command is stopping)."""


_END = _End()
_Item = _Chunk | _Opened | _Dropped | _End | Exception


class Sender:
    """Sends ``source`` to the session's ``audio_url``: ``await run()``; ``stop()`` and ``abandon()`` from the
    same event loop (signal handlers). :attr:`status` and :attr:`uplink` are what a display shows."""

    def __init__(
        self, source: Source, options: SendOptions, on_warning: Callable[[str], None] | None = None
    ) -> None:
        self._source = source
        self._options = options
        self.uplink: AudioUplink
        """The connection to the session (:meth:`connect`)."""
        self._on_warning = on_warning or (lambda text: log.warning("%s", text))
        self.status = SendStatus(source=source.description)
        self._watch = LevelWatch()
        self._stop = threading.Event()
        self._stopping = asyncio.Event()
        self._abandoned = False
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._marks: deque[tuple[int, float]] = deque()
        """(pushed samples after a frame, when its last sample came from the source), oldest first."""
        self._delays: list[float] = []
        self._acks: list[Ack] = []
        self._anchor: float | None = None
        self._told_pace = False
        self._uplink_task: asyncio.Task[int] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._reader: threading.Thread | None = None
        self._started = (time.monotonic(), _cpu_s())

    # -- control -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading the source, send what was read, end the session."""
        self._stop.set()
        self._stopping.set()
        self._source.stop()

    def abandon(self) -> None:
        """Close the connection now, without ending the session: another sender may continue it."""
        self.stop()
        self._abandoned = True
        for task in (self._uplink_task, self._pump_task):  # the pump may wait for room that never comes
            if task is not None:
                task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the run -------------------------------------------------------------------------------------
    async def open_source(self) -> None:
        """Start reading the source; return once it is open (after its retries), or raise why it is not.

        Called before the session is created, so a source that never opens leaves no session behind.
        """
        self._loop = asyncio.get_running_loop()
        self._started = (time.monotonic(), _cpu_s())
        self._reader = threading.Thread(target=self._read_source, name="wsp-send-source", daemon=True)
        self._reader.start()
        stopper: asyncio.Task[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            item = await self._next(stopper)
        finally:
            stopper.cancel()
        if isinstance(item, Exception):
            raise item
        if isinstance(item, _Opened):
            self.status.live = item.live

    async def close(self) -> None:
        """Stop reading the source and let its thread finish (when :meth:`run` is not reached)."""
        self._stop.set()
        self._source.stop()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, THREAD_STOP_S)

    def connect(self, audio_url: str) -> None:
        """The session's audio address (with its token) that :meth:`run` sends to."""
        self.uplink = self._uplink = AudioUplink(audio_url, want_fast=self._options.fast, on_ack=self._on_ack)

    async def run(self) -> SendResult:
        """Send until the source ends or :meth:`stop`; after :meth:`open_source` and :meth:`connect`."""
        assert self._reader is not None, "open_source() first"
        started, cpu_before = self._started
        self._uplink_task = asyncio.create_task(self._uplink.run())
        pump = self._pump_task = asyncio.create_task(self._pump())
        ended = False
        try:
            await asyncio.wait({self._uplink_task, pump}, return_when=asyncio.FIRST_EXCEPTION)
            if pump.done() and not pump.cancelled() and pump.exception() is not None:
                raise pump.exception()  # type: ignore[misc]
            if not self._abandoned:
                await self._uplink_task
                ended = True
        finally:
            self._stop.set()
            self._source.stop()
            for task in (pump, self._uplink_task):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(pump, self._uplink_task, return_exceptions=True)
            await asyncio.to_thread(self._reader.join, THREAD_STOP_S)
        return SendResult(
            ended=ended,
            samples=self._uplink.acked,
            delays_s=list(self._delays),
            cpu_s=_cpu_s() - cpu_before,
            wall_s=time.monotonic() - started,
            source_drops=self.status.source_drops,
            reconnects=self._uplink.reconnects,
            dropped_samples=self._uplink.dropped,
            acks=list(self._acks),
        )

    def _on_ack(self, ack: Ack) -> None:
        """The uplink's callback: how long the newest acknowledged sample took from the source."""
        last: float | None = None
        while self._marks and self._marks[0][0] <= ack.samples:
            last = self._marks.popleft()[1]
        if last is not None:
            self._delays.append(ack.at - last)
        self._acks.append(ack)

    # -- the source thread ---------------------------------------------------------------------------
    def _read_source(self) -> None:
        attempts = 0
        delivered = 0  # samples handed over; a recording read again after a drop skips them
        live = False  # once live, always: a stream whose encoder stopped is waited for, not ended
        while not self._stop.is_set():
            try:
                self.status.source_state = SourceState.OPENING if not delivered else SourceState.RETRYING
                self._source.open()
                live = live or self._source.live
                self._post(_Opened(live))
                self.status.source_state = SourceState.RUNNING
                self.status.source_note = ""
                skip = 0 if live else delivered * BYTES_PER_SAMPLE
                for pcm in self._source.read():
                    if self._stop.is_set():
                        break
                    if skip:
                        pcm, skip = pcm[skip:], max(0, skip - len(pcm))
                    if not pcm:
                        continue
                    self._post(_Chunk(pcm, time.monotonic()))
                    delivered += len(pcm) // BYTES_PER_SAMPLE
                    attempts = 0
                else:
                    if not live:
                        self.status.source_state = SourceState.ENDED
                        break
                    raise SourceUnavailable("the stream ended")
            except SourceError as exc:
                if not delivered:
                    self._post(exc)
                    return
                attempts += 1
                self._retry_later(exc, attempts)
            except SourceUnavailable as exc:
                attempts += 1
                if not delivered and attempts >= self._options.open_attempts:
                    self._post(
                        SourceError(f"cannot open {self._source.description} after {attempts} tries: {exc}")
                    )
                    return
                self._retry_later(exc, attempts)
            finally:
                self._source.close()
        self._post(_END)

    def _retry_later(self, exc: Exception, attempts: int) -> None:
        if self._stop.is_set():  # the source failed because the command stopped it
            return
        pause = backoff_s(attempts, SOURCE_RETRY_BASE_S, SOURCE_RETRY_CAP_S)
        if self.status.source_state is SourceState.RUNNING:
            self.status.source_drops += 1
            self._post(_Dropped())
        self.status.source_state = SourceState.RETRYING
        self.status.source_note = str(exc)
        log.warning("source: %s; trying again in %.1f s", exc, pause)
        self._stop.wait(pause)

    def _post(self, item: _Item) -> None:
        """Hand ``item`` to the event loop; waits while the queue is full, unless the command stops."""
        assert self._loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop has closed
            return
        while True:
            try:
                future.result(timeout=POST_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return
            except concurrent.futures.CancelledError:  # the loop went away with the item
                return

    # -- the event loop side -------------------------------------------------------------------------
    async def _next(self, stopper: asyncio.Task[Any]) -> _Item:
        """The next item from the source thread; :data:`_END` once the command stops, even with audio
        still queued (a recording decoded ahead is not sent after Ctrl-C)."""
        if self._stopping.is_set():
            return _END
        getter: asyncio.Task[Any] = asyncio.ensure_future(self._queue.get())
        await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        return _END

    async def _pump(self) -> None:
        frame_bytes = max(1, round(self._options.frame_s * SAMPLE_RATE)) * BYTES_PER_SAMPLE
        pending = bytearray()
        last_at = time.monotonic()
        stopper: asyncio.Task[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                item = await self._next(stopper)
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, _End):
                    if pending:
                        await self._send(bytes(pending), last_at)
                    self._uplink.finish()
                    return
                if isinstance(item, _Opened):
                    self.status.live = item.live
                    continue
                if isinstance(item, _Dropped):
                    if pending:
                        await self._send(bytes(pending), last_at)
                        pending.clear()
                    continue
                pending += item.pcm
                last_at = item.at
                while len(pending) >= frame_bytes:
                    frame = bytes(pending[:frame_bytes])
                    del pending[:frame_bytes]
                    await self._send(frame, last_at)
        finally:
            stopper.cancel()

    async def _send(self, frame: bytes, at: float) -> None:
        """Push one frame, paced when it is part of a recording; note when its last sample was due."""
        samples = len(frame) // BYTES_PER_SAMPLE
        if not self.status.live:
            await self._uplink.wait_for_room(samples)
            fast = bool(self._options.fast and self._uplink.fast_granted)
            if self._options.fast and self._uplink.fast_granted is False and not self._told_pace:
                self._told_pace = True
                self._on_warning(
                    "ingest takes audio in real time only (WSP_ACCEPT_FAST_AUDIO is off there): "
                    "sending the recording in real time"
                )
            self.status.paced = not fast
            if not fast:
                at = await self._pace(samples)
        self._marks.append((self._uplink.pushed + samples, at))
        self._uplink.push(frame)
        for text in self._watch.feed(frame, at):
            self.status.warnings.append(text)
            self._on_warning(text)
        self.status.meter = self._watch.reading()

    async def _pace(self, samples: int) -> float:
        """Wait until the frame's last sample is due in real time; when that is."""
        now = time.monotonic()
        if self._anchor is None or now - (self._anchor + self._uplink.pushed / SAMPLE_RATE) > REANCHOR_S:
            self._anchor = now - self._uplink.pushed / SAMPLE_RATE
        due = self._anchor + (self._uplink.pushed + samples) / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - now))
        return max(due, time.monotonic())


def _cpu_s() -> float:
    """CPU seconds this process (all its threads) and its finished children (an ffmpeg relay) used."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
