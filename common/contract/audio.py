"""A session's audio stream (``keys.audio``): what its entries hold, how they are read, how it is trimmed.

Ingest appends the entries (the scripts of :mod:`common.contract.sessions`): :data:`KIND` is
:data:`AUDIO_KIND` or :data:`END_KIND`, :data:`SAMPLE0` the absolute index of the entry's first sample
(of an end entry: the session's total), :data:`PCM` the s16le 16 kHz mono bytes, :data:`AT` the unix time
it was appended; an end entry written because the session fell idle also has :data:`REASON`. The worker
reads them back as :class:`AudioEntry` and trims what no track can need any more (fenced).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.audio import pcm16_to_float
from common.contract import keys
from common.contract.leases import FENCE_LUA, Lease, run_fenced
from common.contract.scripts import Script, text
from common.errors import AudioError

log = logging.getLogger(__name__)

KIND = "kind"
SAMPLE0 = "sample0"
PCM = "pcm"
AT = "at"
REASON = "reason"
"""Fields of an audio stream entry."""

AUDIO_KIND = "audio"
END_KIND = "end"
"""Values of :data:`KIND`: a chunk of audio, or the single end marker after the last one."""

FIRST_ENTRY = "-"
"""The start of the stream, as a read or resume point."""
NONE_SEEN = "0-0"
"""The id before every entry: what a reader that has read nothing has seen."""


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


def _field(fields: Mapping[Any, Any], name: str, default: bytes) -> Any:
    """A field of an entry read by a client with or without ``decode_responses``."""
    return fields.get(name.encode(), fields.get(name, default))


def parse_entry(entry_id: bytes | str, fields: Mapping[Any, Any]) -> AudioEntry:
    """An :class:`AudioEntry` from raw stream fields; :class:`AudioError` for a malformed entry."""
    eid = text(entry_id)
    kind = _field(fields, KIND, b"")
    kind = kind.decode(errors="replace") if isinstance(kind, bytes) else str(kind)
    try:
        sample0 = int(_field(fields, SAMPLE0, b"0"))
    except ValueError as exc:
        raise AudioError(f"audio entry {eid}: {SAMPLE0} is not an integer") from exc
    if kind == END_KIND:
        return AudioEntry(eid, sample0, np.zeros(0, dtype=np.float32), is_end=True)
    if kind != AUDIO_KIND:
        raise AudioError(f"audio entry {eid}: unknown {KIND} {kind!r}")
    return AudioEntry(eid, sample0, pcm16_to_float(_field(fields, PCM, b"")))


def parse_or_skip(entry_id: bytes | str, fields: Mapping[Any, Any]) -> AudioEntry:
    """Like :func:`parse_entry`, but a malformed entry becomes an empty one (logged) instead of an error."""
    try:
        return parse_entry(entry_id, fields)
    except AudioError as exc:
        log.warning("skipping a malformed audio entry: %s", exc)
        return AudioEntry(text(entry_id), 0, np.zeros(0, dtype=np.float32))


async def read_range(redis: Any, sid: str, start: str, count: int) -> list[AudioEntry]:
    """Entries from ``start`` (inclusive, :data:`FIRST_ENTRY` for the first) on, at most ``count``."""
    rows: Any = await redis.xrange(keys.audio(sid), min=start, max="+", count=count)
    return [parse_or_skip(eid, fields) for eid, fields in rows]


async def read_after(redis: Any, sid: str, after: str, count: int, block_ms: int) -> list[AudioEntry]:
    """Entries after ``after`` (:data:`NONE_SEEN`: all), waiting up to ``block_ms`` for the first one."""
    reply: Any = await redis.xread({keys.audio(sid): after}, count=count, block=block_ms)
    return [parse_or_skip(eid, fields) for _, rows in reply or [] for eid, fields in rows]


async def newest(redis: Any, sid: str) -> AudioEntry | None:
    """The newest entry of the stream (its ``sample_end`` is where the audio ends now); None if empty."""
    rows: Any = await redis.xrevrange(keys.audio(sid), max="+", min="-", count=1)
    if not rows:
        return None
    eid, fields = rows[0]
    return parse_or_skip(eid, fields)


_TRIM = Script(
    FENCE_LUA
    + """
-- KEYS: 1 lease, 2 epoch, 3 audio stream; ARGV: 1 worker id, 2 token, 3 oldest entry id to keep.
-- Returns the number of entries trimmed (0 when the lease is no longer held).
if fence(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
return redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])
"""
)


async def trim(redis: Any, lease: Lease, keep_from: str) -> int:
    """Drop the entries before ``keep_from`` while ``lease`` holds; how many went (0 once it is lost)."""
    return int(await run_fenced(_TRIM, redis, lease, [keys.audio(lease.sid)], [keep_from]))
