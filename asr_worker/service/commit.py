"""What one step of one track commits: its caption events, built from the words the step committed.

The commit itself is one fenced Redis script (:func:`common.contract.captions.commit`): it numbers the
finals, appends them to the caption stream, saves the track's checkpoint and publishes the events, and a
worker that lost its lease can never write (:class:`~common.contract.leases.Fenced`).
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from asr_worker.core.words import Word, join_words
from common.contract import audio, captions
from common.contract.captions import TrackCommit
from common.contract.leases import Fenced, Lease
from common.schemas import CaptionEvent

__all__ = ["Committer", "Fenced", "TrackCommit", "end_event", "final_event", "partial_event", "skip_event"]


def final_event(track: str, words: list[Word], joiner: str, now: float | None = None) -> CaptionEvent:
    """One final caption from the words a step committed (its ``seq`` is assigned at commit)."""
    return CaptionEvent(
        type="final",
        track=track,
        text=join_words(words, joiner),
        start=words[0].start,
        end=words[-1].end,
        emitted_at=time.time() if now is None else now,
    )


def partial_event(track: str, words: list[Word], joiner: str, now: float | None = None) -> CaptionEvent:
    """The current unstable tail of a track (empty text clears it)."""
    return CaptionEvent(
        type="partial",
        track=track,
        text=join_words(words, joiner),
        start=words[0].start if words else None,
        end=words[-1].end if words else None,
        emitted_at=time.time() if now is None else now,
    )


def skip_event(track: str, start_s: float, end_s: float, now: float | None = None) -> CaptionEvent:
    """The worker jumped over ``start_s``-``end_s`` of audio to catch up with real time."""
    return CaptionEvent(
        type="skip", track=track, start=start_s, end=end_s, emitted_at=time.time() if now is None else now
    )


def end_event(track: str, now: float | None = None) -> CaptionEvent:
    return CaptionEvent(type="end", track=track, emitted_at=time.time() if now is None else now)


class Committer:
    """A session runner's writes: each step of a track, and the trims of the audio stream, both fenced."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def trim_audio(self, lease: Lease, keep_from: str) -> int:
        """Drop the session's audio entries before ``keep_from`` (while the lease holds); how many went."""
        return await audio.trim(self._redis, lease, keep_from)

    async def commit(self, lease: Lease, commit: TrackCommit) -> list[int]:
        """Write one step atomically; the assigned seqs of its finals, in order. Raises :class:`Fenced`."""
        return await captions.commit(self._redis, lease, commit)
