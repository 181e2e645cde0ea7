"""One session from outside the stack: audio in real time through ingest, two displays on the publisher,
and optionally the session's worker killed mid-stream, with what each display saw and when.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.schemas import CaptionEvent
from wsp.bench.processes import Display, stream
from wsp.client import open_session

DISPLAYS = 2
CONNECT_TIMEOUT_S = 10.0
END_GRACE_S = 60.0
"""After the last audio, how long displays may wait for the last captions and the end."""
BYTES_PER_SECOND = 32_000


@dataclass
class SessionRun:
    sid: str
    displays: list[Display]
    began: float
    """``time.monotonic()`` when the audio started."""
    killed_worker: str | None = None
    killed_at: float | None = None
    """``time.monotonic()`` just before the kill."""
    killed_wall: float | None = None

    def finals(self, display: int) -> list[CaptionEvent]:
        return self.displays[display].finals("ja")

    def seqs(self, display: int) -> list[int | None]:
        return [e.seq for e in self.finals(display)]

    def text(self, display: int) -> str:
        return "".join(e.text for e in self.finals(display))

    def skipped_s(self) -> float:
        """Audio the worker skipped to catch up with real time (it fell behind: a host too slow or busy)."""
        skips = [r.event for r in self.displays[0].received if r.event.type == "skip"]
        return round(sum((e.end or 0.0) - (e.start or 0.0) for e in skips), 2)

    def ended(self) -> bool:
        return all(any(r.event.type == "end" for r in d.received) for d in self.displays)

    @property
    def first_event_at(self) -> float:
        """``time.monotonic()`` of the first caption (partial or final) at the first display."""
        return min(r.at for r in self.displays[0].received if r.event.type in ("partial", "final"))

    @property
    def first_final_at(self) -> float:
        return min(r.at for r in self.displays[0].received if r.event.type == "final")

    def resume_s(self, finals_only: bool = False) -> float | None:
        """From the kill to the first caption the successor made, at the first display."""
        if self.killed_at is None or self.killed_wall is None:
            return None
        kinds = ("final",) if finals_only else ("partial", "final")
        after = [
            r.at
            for r in self.displays[0].received
            if r.event.type in kinds and r.at > self.killed_at and r.event.emitted_at >= self.killed_wall
        ]
        return round(min(after) - self.killed_at, 2) if after else None


async def stream_session(
    ingest_url: str,
    pcm: bytes,
    kill_after_finals: int | None = None,
    kill: Callable[[str], tuple[str, float, float]] | None = None,
) -> SessionRun:
    """Stream ``pcm`` (16 kHz s16le, Japanese) into a new session read by :data:`DISPLAYS` displays; with
    ``kill``, call it with the session id once the first display has ``kill_after_finals`` finals: it kills
    the owner and returns the worker id, and ``time.monotonic()`` and ``time.time()`` just before the kill."""
    info = await open_session(ingest_url, None, language="ja", title="compose check")
    displays = [Display(info.captions_url) for _ in range(DISPLAYS)]
    watching = [asyncio.create_task(d.run()) for d in displays]
    audio_s = len(pcm) / BYTES_PER_SECOND
    pushing = None
    try:
        await asyncio.wait_for(asyncio.gather(*(d.connected.wait() for d in displays)), CONNECT_TIMEOUT_S)
        result = SessionRun(info.id, displays, time.monotonic())
        pushing = stream(info.audio_url, pcm)
        if kill is not None and kill_after_finals is not None:
            await displays[0].wait_finals(kill_after_finals, timeout_s=audio_s)
            killed = await asyncio.to_thread(kill, info.id)
            result.killed_worker, result.killed_at, result.killed_wall = killed
        await asyncio.wait_for(pushing, audio_s + END_GRACE_S)
        await asyncio.wait_for(asyncio.gather(*watching), END_GRACE_S)
    finally:
        for task in [*watching, *([pushing] if pushing else [])]:
            task.cancel()
        await asyncio.gather(*watching, *([pushing] if pushing else []), return_exceptions=True)
    return result
