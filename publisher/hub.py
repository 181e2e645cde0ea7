"""Live fan-out: one Redis pub/sub subscription per session per process, shared by all its displays.

The first display of a session subscribes to ``keys.live(sid)``; the last one to leave unsubscribes. Each
display has a bounded queue: a display that cannot keep up is dropped (told to close with 4408) instead of
stalling the others or growing memory without bound.

A subscription lost to a Redis failure is made again with jittered backoff; every display of the session
is then told to re-read the caption stream (a ``resync`` marker in its queue), so finals published while
the subscription was down still arrive, once and in order. Only after :data:`RESUBSCRIBE_ATTEMPTS` failed
tries are the displays closed (1011), and they reconnect with ``since=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from common.contract import captions, keys
from common.contract.captions import Caption
from common.retry import backoff_s, reraise_if_cancelling
from publisher.metrics import PublisherMetrics

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4408
CLOSE_FEED_LOST = 1011
RESUBSCRIBE_ATTEMPTS = 8
"""Tries to subscribe again after the subscription was lost (jittered backoff, about 20 s in all)."""


@dataclass(frozen=True)
class LiveEvent:
    """What a display's queue holds: a live caption (parsed once for every display, sent as published),
    or, without one, a resync marker: the subscription was made again, read the caption stream for what
    was missed."""

    caption: Caption | None

    @classmethod
    def resync_marker(cls) -> LiveEvent:
        return cls(None)


class Display:
    """One display's place in the hub: its queue of live events and, once closed, why."""

    def __init__(self, sid: str, queue_size: int) -> None:
        self.sid = sid
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=queue_size)
        self.closed = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""

    def offer(self, live: LiveEvent) -> bool:
        """Queue an event without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(live)
        except asyncio.QueueFull:
            return False
        return True

    def shut(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed.set()


@dataclass(eq=False)
class _Channel:
    sid: str
    displays: set[Display] = field(default_factory=set)
    ready: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None


class CaptionHub:
    """Per process: the live subscriptions of every session that has displays here."""

    def __init__(self, redis: Any, queue_size: int, metrics: PublisherMetrics | None = None) -> None:
        self._redis = redis
        self._queue_size = queue_size
        self._channels: dict[str, _Channel] = {}
        self.metrics = metrics or PublisherMetrics()
        self.metrics.displays.set_function(self.display_count)

    def display_count(self) -> int:
        """Displays connected to this process, every session together."""
        return sum(len(channel.displays) for channel in self._channels.values())

    def displays(self, sid: str) -> int:
        channel = self._channels.get(sid)
        return len(channel.displays) if channel else 0

    async def join(self, sid: str) -> Display:
        """A new display of ``sid``; returns once the session's subscription is live in Redis."""
        channel = self._channels.get(sid)
        if channel is None:
            channel = _Channel(sid)
            # A failure nobody waits for is logged by the listener, not again by asyncio.
            channel.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._channels[sid] = channel
            channel.task = asyncio.create_task(self._listen(channel), name=f"live:{sid}")
        display = Display(sid, self._queue_size)
        channel.displays.add(display)
        try:
            await asyncio.shield(channel.ready)
        except BaseException:
            self.leave(display)
            raise
        return display

    def leave(self, display: Display) -> None:
        """Remove a display; the last one of a session ends its subscription."""
        channel = self._channels.get(display.sid)
        if channel is None or display not in channel.displays:
            return
        channel.displays.discard(display)
        if not channel.displays:
            del self._channels[display.sid]
            if channel.task is not None:
                channel.task.cancel()

    async def close(self) -> None:
        """Close every display and subscription (process shutdown)."""
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            for display in channel.displays:
                display.shut(1001, "publisher shutting down")
            if channel.task is not None:
                channel.task.cancel()
        for channel in channels:
            if channel.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await channel.task

    def _fan_out(self, channel: _Channel, live: LiveEvent) -> None:
        for display in list(channel.displays):
            if not display.offer(live):
                log.warning(
                    "display of session %s dropped: %d events queued",
                    channel.sid,
                    self._queue_size,
                    extra={"session": channel.sid},
                )
                self.metrics.displays_dropped.inc()
                display.shut(CLOSE_TOO_SLOW, "too slow")
                self.leave(display)

    async def _listen(self, channel: _Channel) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self._subscribed(channel)
                    return
                except (RedisError, OSError) as exc:
                    reraise_if_cancelling()
                    failures += 1
                    if not channel.ready.done() or failures > RESUBSCRIBE_ATTEMPTS:
                        self._lost(channel, exc)
                        return
                    pause = backoff_s(failures)
                    log.warning(
                        "live subscription of session %s lost (%s); again in %.1f s (%d tries left)",
                        channel.sid,
                        exc,
                        pause,
                        RESUBSCRIBE_ATTEMPTS - failures,
                        extra={"session": channel.sid},
                    )
                    await asyncio.sleep(pause)
        finally:
            if not channel.ready.done():
                channel.ready.cancel()

    async def _subscribed(self, channel: _Channel) -> None:
        """One subscription, until it fails; every confirmation after the first one is a resubscription."""
        name = keys.live(channel.sid)
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(name)
            async for message in pubsub.listen():
                kind = message["type"]
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind == "subscribe" and not channel.ready.done():
                    log.debug("subscribed to %s", name)
                    channel.ready.set_result(None)
                elif kind == "subscribe":
                    log.info(
                        "live subscription of session %s is back", channel.sid, extra={"session": channel.sid}
                    )
                    self._fan_out(channel, LiveEvent.resync_marker())
                elif kind == "message":
                    caption = captions.decode(message["data"])
                    if caption is not None:
                        self._fan_out(channel, LiveEvent(caption))
        finally:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(_unsubscribe(pubsub, name))

    def _lost(self, channel: _Channel, exc: BaseException) -> None:
        """The subscription cannot be made (again): close the displays, they reconnect with ``since=``."""
        log.error(
            "live subscription of session %s lost: %s", channel.sid, exc, extra={"session": channel.sid}
        )
        if not channel.ready.done():
            channel.ready.set_exception(exc)
        for display in list(channel.displays):
            display.shut(CLOSE_FEED_LOST, "caption feed lost")
        if self._channels.get(channel.sid) is channel:
            del self._channels[channel.sid]


async def _unsubscribe(pubsub: Any, name: str) -> None:
    try:
        await pubsub.unsubscribe(name)
    finally:
        await pubsub.aclose()
