"""Reading a session's audio stream: entries, the part of each a track still needs, resume points.

Entries follow the ingest contract: ``kind`` = audio | end, ``sample0`` = absolute index of the first
sample, ``pcm`` = s16le 16 kHz mono bytes. Pure apart from :func:`read_entries` (one Redis call).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.asyncio import Redis

from common.audio import SAMPLE_RATE, pcm16_to_float
from common.errors import AudioError

log = logging.getLogger(__name__)

FIRST_ENTRY = "-"
"""The resume point of a track that has read nothing yet: the start of the stream."""


@dataclass(frozen=True)
class AudioEntry:
    """One entry of the audio stream: samples from ``sample0`` on, or the end marker."""

    id: str
    sample0: int
    samples: np.ndarray
    is_end: bool = False

    @property
    def sample_end(self) -> int:
        return self.sample0 + self.samples.size


def parse_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> AudioEntry:
    """An :class:`AudioEntry` from raw stream fields; :class:`AudioError` for a malformed entry."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    kind = fields.get(b"kind", b"").decode(errors="replace")
    try:
        sample0 = int(fields.get(b"sample0", b"0"))
    except ValueError as exc:
        raise AudioError(f"audio entry {eid}: sample0 is not an integer") from exc
    if kind == "end":
        return AudioEntry(eid, sample0, np.zeros(0, dtype=np.float32), is_end=True)
    if kind != "audio":
        raise AudioError(f"audio entry {eid}: unknown kind {kind!r}")
    return AudioEntry(eid, sample0, pcm16_to_float(fields.get(b"pcm", b"")))


def entry_ms(entry_id: str) -> int | None:
    """The Redis server's clock (ms) when it appended an entry with an auto id ``<ms>-<n>``."""
    ms = entry_id.partition("-")[0]
    return int(ms) if ms.isdigit() else None


def lag_s(entries: list[AudioEntry], heard_sample: int, edge_id: str) -> float:
    """How far behind real time a track is: how much earlier than the newest entry of the stream
    (``edge_id``) the oldest audio in ``entries`` that the track has not heard arrived.

    Both times are the Redis server's (entry ids), so clocks of other hosts do not matter. Audio the track's
    model has already heard (re-read after a takeover) does not count; 0 when there is nothing new.
    """
    edge = entry_ms(edge_id)
    for entry in entries:
        if not entry.is_end and entry.sample_end > heard_sample:
            arrived = entry_ms(entry.id)
            return 0.0 if edge is None or arrived is None else max(0.0, (edge - arrived) / 1000)
    return 0.0


def unseen_part(entry: AudioEntry, fed_until: int, max_gap_s: float) -> np.ndarray:
    """The samples of ``entry`` a track that has been fed up to ``fed_until`` still needs.

    Audio already fed is cut off (entries are re-read after a takeover). A gap before the entry (the
    stream was trimmed under a slow worker) is filled with silence, at most ``max_gap_s`` of it, so
    time stamps stay absolute.
    """
    if entry.sample_end <= fed_until:
        return entry.samples[:0]
    if entry.sample0 >= fed_until:
        gap = entry.sample0 - fed_until
        if gap == 0:
            return entry.samples
        log.warning("audio gap of %.2f s before entry %s", gap / SAMPLE_RATE, entry.id)
        pad = np.zeros(min(gap, round(max_gap_s * SAMPLE_RATE)), dtype=np.float32)
        return np.concatenate([pad, entry.samples])
    return entry.samples[fed_until - entry.sample0 :]


class ResumeIndex:
    """Recent entries (id, first sample, end sample), to name the entry a track must resume from."""

    def __init__(self) -> None:
        self._entries: deque[tuple[str, int, int]] = deque()

    def add(self, entry: AudioEntry) -> None:
        if not entry.is_end:
            self._entries.append((entry.id, entry.sample0, entry.sample_end))

    def entry_for(self, sample: int) -> str:
        """The id of the entry holding ``sample`` (or the next one); the stream start if none is known."""
        for eid, _, end in self._entries:
            if end > sample:
                return eid
        return self._entries[-1][0] if self._entries else FIRST_ENTRY

    def forget_before(self, sample: int) -> None:
        """Drop entries that end at or before ``sample`` (keeping the last one)."""
        while len(self._entries) > 1 and self._entries[0][2] <= sample:
            self._entries.popleft()

    def __len__(self) -> int:
        return len(self._entries)


def parse_or_skip(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> AudioEntry:
    """Like :func:`parse_entry`, but a malformed entry becomes an empty one (logged) instead of an error."""
    try:
        return parse_entry(entry_id, fields)
    except AudioError as exc:
        log.warning("skipping a malformed audio entry: %s", exc)
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return AudioEntry(eid, 0, np.zeros(0, dtype=np.float32))


async def read_range(redis: Redis, stream: str, start: str, count: int) -> list[AudioEntry]:
    """Entries from ``start`` (inclusive, ``-`` for the first) on, at most ``count``."""
    rows: Any = await redis.xrange(stream, min=start, max="+", count=count)
    return [parse_or_skip(eid, fields) for eid, fields in rows]


async def read_after(redis: Redis, stream: str, after: str, count: int, block_ms: int) -> list[AudioEntry]:
    """Entries after ``after``, waiting up to ``block_ms`` for the first one."""
    reply: Any = await redis.xread({stream: after}, count=count, block=block_ms)
    return [parse_or_skip(eid, fields) for _, rows in reply or [] for eid, fields in rows]


async def live_edge(redis: Redis, stream: str) -> AudioEntry | None:
    """The newest entry of the stream (its ``sample_end`` is where the audio ends now); None if empty."""
    rows: Any = await redis.xrevrange(stream, max="+", min="-", count=1)
    if not rows:
        return None
    eid, fields = rows[0]
    return parse_or_skip(eid, fields)


# KEYS[1] session hash, KEYS[2] audio stream; ARGV: newest entry id the reader has seen ("0-0": none), at.
# Appends the end entry, as ingest does at the end of a stream, unless audio arrived meanwhile or the
# audio has already ended. Returns 1 if it ended the audio.
_END_QUIET = """
local f = redis.call('HMGET', KEYS[1], 'record', 'status', 'audio_ended', 'samples')
if not f[1] or f[2] == 'ended' or f[3] == '1' then return 0 end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local seen = '0-0'
if #newest > 0 then seen = newest[1][1] end
if seen ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], '*', 'kind', 'end', 'sample0', f[4] or '0', 'at', ARGV[2], 'reason', 'idle')
redis.call('HSET', KEYS[1], 'audio_ended', '1', 'audio_ended_at', ARGV[2], 'ended_reason', 'idle')
return 1
"""


async def end_quiet_audio(redis: Redis, session_key: str, stream: str, seen: str, at: float) -> bool:
    """End a session's audio on behalf of its silent sender, if nothing arrived after entry ``seen``.

    Ingest then refuses more audio for it (the session has ended), and the end entry takes the usual way:
    every track is flushed and the displays get ``end``.
    """
    script = redis.register_script(_END_QUIET)
    return bool(await script(keys=[session_key, stream], args=[seen, repr(at)]))
