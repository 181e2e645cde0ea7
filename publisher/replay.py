"""History replay and per-display ordering: every final reaches a display exactly once, in order, per track.

The caption stream (:mod:`common.contract.captions`) is the record; pub/sub is live but lossy. A display
first subscribes, then replays the stream after its ``since`` point, then takes live events through
:class:`DisplayFeed`: a final already sent is skipped, a final that leaves a gap makes the feed read the
missing ones from the stream first (:func:`catch_up`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from common.contract import captions
from common.contract.captions import Caption
from common.errors import WspError
from common.schemas import CaptionEvent

log = logging.getLogger(__name__)

PAGE = 500
"""Stream entries read per XRANGE call."""


class BadQuery(WspError):
    """A display asked for tracks or a ``since`` point that make no sense for the session."""


@dataclass(frozen=True)
class DisplayRequest:
    """What one display asked for: the tracks it shows and, per track, the last final it already has."""

    tracks: tuple[str, ...]
    since: Mapping[str, int]


def parse_request(tracks_param: str | None, since_param: str | None, known: Iterable[str]) -> DisplayRequest:
    """Read ``tracks=ja,en`` (default: all the session's tracks) and ``since=12`` or ``since=ja:12,en:9``."""
    session_tracks = tuple(known)
    if tracks_param is None or not tracks_param.strip():
        tracks = session_tracks
    else:
        tracks = tuple(dict.fromkeys(t.strip() for t in tracks_param.split(",") if t.strip()))
        unknown = [t for t in tracks if t not in session_tracks]
        if unknown or not tracks:
            raise BadQuery(
                f"unknown track {', '.join(unknown)[:80]!r}; this session has {', '.join(session_tracks)}"
            )
    since = dict.fromkeys(tracks, 0)
    if since_param is not None and since_param.strip():
        text = since_param.strip()
        if ":" not in text:
            value = _seq(text)
            since = dict.fromkeys(tracks, value)
        else:
            for part in text.split(","):
                track, sep, number = part.strip().partition(":")
                if not sep or track not in session_tracks:
                    raise BadQuery(f"since must look like 12 or ja:12,en:9, got {since_param[:80]!r}")
                if track in since:
                    since[track] = _seq(number)
    return DisplayRequest(tracks, since)


def _seq(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise BadQuery(f"since must be a whole number, got {text[:40]!r}") from None
    if value < 0:
        raise BadQuery(f"since must not be negative, got {value}")
    return value


class CaptionHistory:
    """Reads one session's caption stream (:func:`common.contract.captions.history`) in pages."""

    def __init__(self, redis: Any, sid: str, page: int = PAGE) -> None:
        self._redis = redis
        self._sid = sid
        self._page = page

    def after(self, entry_id: str | None) -> AsyncIterator[Caption]:
        """Entries strictly after ``entry_id`` (from the start when None), oldest first."""
        return captions.history(self._redis, self._sid, entry_id, self._page)

    async def finals(self, track: str) -> list[CaptionEvent]:
        """Every final of one track, in sequence order."""
        found = [
            c.event async for c in self.after(None) if c.event.type == "final" and c.event.track == track
        ]
        return sorted(found, key=lambda e: e.seq or 0)


class Verdict(Enum):
    SEND = "send"
    SKIP = "skip"
    GAP = "gap"
    """A final whose predecessors have not been sent: read them from the stream first."""


def _marker(event: CaptionEvent) -> tuple[object, ...]:
    """Identity of a skip or end event (they carry no seq): seen once in history, skipped live."""
    return (event.type, event.track, event.emitted_at, event.start, event.end)


class DisplayFeed:
    """One display's delivery state. Pure: it decides, the caller reads Redis and sends."""

    def __init__(self, request: DisplayRequest, session_tracks: Iterable[str]) -> None:
        self.tracks = frozenset(request.tracks)
        self._session_tracks = frozenset(session_tracks)
        self.last_sent: dict[str, int] = {t: request.since.get(t, 0) for t in request.tracks}
        self.cursor: str | None = None
        """Id of the last caption-stream entry read; gap reads continue after it."""
        self._last_final_at: dict[str, float] = {}
        self._markers: set[tuple[object, ...]] = set()
        self._ended: set[str] = set()
        self._reached = {t for t in request.tracks if self.last_sent[t] == 0}
        """Tracks whose ``since`` point the stream has passed: older skip events are not replayed."""

    def wants(self, event: CaptionEvent) -> bool:
        if event.track in self.tracks:
            return True
        # An end that names no track of the session ends them all.
        return event.type == "end" and event.track not in self._session_tracks

    @property
    def finished(self) -> bool:
        """Every requested track has ended: nothing more will come."""
        return self._ended >= self.tracks

    def from_stream(self, entry_id: str | None, event: CaptionEvent) -> bool:
        """Whether a caption-stream entry (replay or gap read) goes to the display."""
        self.cursor = entry_id or self.cursor
        if not self.wants(event):
            return False
        if event.type == "final":
            if event.seq is not None and event.seq >= self.last_sent[event.track]:
                self._reached.add(event.track)
            if event.seq is None or event.seq <= self.last_sent[event.track]:
                return False
            if event.seq > self.last_sent[event.track] + 1:
                log.warning(
                    "caption stream lacks %s finals %d-%d",
                    event.track,
                    self.last_sent[event.track] + 1,
                    event.seq - 1,
                )
            self._sent_final(event)
            return True
        if event.type == "skip" and event.track not in self._reached:
            return False
        return self._once(event)

    def live(self, event: CaptionEvent) -> Verdict:
        """What to do with an event from the live channel."""
        if not self.wants(event):
            return Verdict.SKIP
        if event.type == "partial":
            stale = event.emitted_at < self._last_final_at.get(event.track, float("-inf"))
            return Verdict.SKIP if stale else Verdict.SEND
        if event.type == "final":
            if event.seq is None or event.seq <= self.last_sent[event.track]:
                return Verdict.SKIP
            if event.seq > self.last_sent[event.track] + 1:
                return Verdict.GAP
            self._sent_final(event)
            return Verdict.SEND
        return Verdict.SEND if self._once(event) else Verdict.SKIP

    def force(self, event: CaptionEvent) -> bool:
        """After a gap read: send a live final the stream did not hold (should not happen), unless sent."""
        if event.seq is None or event.seq <= self.last_sent[event.track]:
            return False
        log.warning(
            "finals %s %d-%d missing from the caption stream",
            event.track,
            self.last_sent[event.track] + 1,
            event.seq - 1,
        )
        self._sent_final(event)
        return True

    def _sent_final(self, event: CaptionEvent) -> None:
        assert event.seq is not None
        self.last_sent[event.track] = event.seq
        self._last_final_at[event.track] = event.emitted_at

    def _once(self, event: CaptionEvent) -> bool:
        marker = _marker(event)
        if marker in self._markers:
            return False
        self._markers.add(marker)
        if event.type == "end":
            self._ended |= {event.track} if event.track in self.tracks else set(self.tracks)
        return True


async def replay(history: CaptionHistory, feed: DisplayFeed) -> AsyncIterator[Caption]:
    """The history a display has not seen yet, from the start of the stream."""
    async for caption in history.after(feed.cursor):
        if feed.from_stream(caption.entry_id, caption.event):
            yield caption


async def catch_up(history: CaptionHistory, feed: DisplayFeed, live: Caption) -> list[Caption]:
    """Captions to send for a live final that arrived after a gap: the missing ones, then itself."""
    out = [c async for c in replay(history, feed)]
    if feed.force(live.event):
        out.append(live)
    return out
