"""The session store of the ingest service: the session hash and the audio stream in Redis.

Every write that must be exact runs as one server-side script (atomic, and valid on Redis Cluster because
all of a session's keys share its hash tag): the audio chunk's ``sample0`` is read from the session's
``samples`` counter, the chunk is appended and the counter advanced in the same step, so concurrent
writers can never produce overlapping or missing sample ranges, and nothing lands after the ``end`` entry.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from common import auth
from common.audio import SAMPLE_RATE
from common.contract import keys
from common.errors import WspError
from common.schemas import SessionRecord

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
"""PCM s16le, mono."""


class SessionMissing(WspError):
    """No session with this id exists."""


class SessionClosed(WspError):
    """The session's audio has ended (or the session itself has): nothing more may be appended."""


class AtCapacity(WspError):
    """The deployment already has ``WSP_MAX_SESSIONS`` sessions open: a new one is refused."""


class WriterReplaced(WspError):
    """Another connection started streaming this session's audio; this one may no longer write."""


@dataclass(frozen=True)
class SessionView:
    """A session as the ingest service sees it: the record plus the live fields of its hash."""

    record: SessionRecord
    status: str
    samples: int
    audio_ended: bool


# KEYS[1] session hash; ARGV[1] writer token. Returns {verdict, samples so far}.
_START = """
local f = redis.call('HMGET', KEYS[1], 'record', 'status', 'audio_ended', 'samples')
if not f[1] then return {'missing', 0} end
if f[2] == 'ended' or f[3] == '1' then return {'ended', 0} end
redis.call('HSET', KEYS[1], 'writer', ARGV[1])
if f[2] ~= 'streaming' then redis.call('HSET', KEYS[1], 'status', 'streaming') end
return {'ok', tonumber(f[4] or '0')}
"""

# KEYS[1] session hash, KEYS[2] audio stream; ARGV: writer, samples in chunk, pcm, at, maxlen, and the
# sample0 the writer expects ("" when it does not say). Returns {verdict, sample0 of the chunk}.
# A writer that says where its chunk starts makes the append idempotent: when the counter already stands
# one chunk further, this very chunk was appended and only the reply was lost (a client library retrying
# after a dropped connection), so nothing is appended twice.
_APPEND = """
local f = redis.call('HMGET', KEYS[1], 'record', 'status', 'audio_ended', 'writer', 'samples')
if not f[1] then return {'missing', 0} end
if f[2] == 'ended' or f[3] == '1' then return {'ended', 0} end
if f[4] ~= ARGV[1] then return {'replaced', 0} end
local sample0 = f[5] or '0'
if ARGV[6] ~= '' and tonumber(sample0) ~= tonumber(ARGV[6]) then
  if tonumber(sample0) == tonumber(ARGV[6]) + tonumber(ARGV[2]) then return {'ok', tonumber(ARGV[6])} end
  return {'out_of_step', tonumber(sample0)}
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
  'kind', 'audio', 'sample0', sample0, 'pcm', ARGV[3], 'at', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'samples', ARGV[2])
return {'ok', tonumber(sample0)}
"""

# KEYS[1] session hash, KEYS[2] audio stream; ARGV: writer, at. Returns {verdict, total samples}.
_END = """
local f = redis.call('HMGET', KEYS[1], 'record', 'status', 'audio_ended', 'writer', 'samples')
if not f[1] then return {'missing', 0} end
if f[3] == '1' and f[4] == ARGV[1] then return {'ok', tonumber(f[5] or '0')} end
if f[2] == 'ended' or f[3] == '1' then return {'ended', 0} end
if f[4] ~= ARGV[1] then return {'replaced', 0} end
local samples = f[5] or '0'
redis.call('XADD', KEYS[2], '*', 'kind', 'end', 'sample0', samples, 'at', ARGV[2])
redis.call('HSET', KEYS[1], 'audio_ended', '1', 'audio_ended_at', ARGV[2])
return {'ok', tonumber(samples)}
"""


# KEYS[1] active sessions; ARGV: sid, created, most sessions open at once. 1 if announced, 0 when full.
_ANNOUNCE = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""


def stream_maxlen(max_audio_s: float, frame_samples: int) -> int:
    """How many stream entries hold ``max_audio_s`` of audio when chunks have ``frame_samples`` samples.

    Used as the approximate ``MAXLEN``; one extra entry leaves room for the ``end`` marker.
    """
    return math.ceil(max_audio_s * SAMPLE_RATE / max(1, frame_samples)) + 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _verdict(reply: Any, sid: str) -> int:
    verdict, number = _text(reply[0]), int(reply[1])
    if verdict == "missing":
        raise SessionMissing(f"no session {sid!r}: create one with POST /v1/sessions first")
    if verdict == "ended":
        raise SessionClosed(f"the audio of session {sid!r} has already ended; create a new session")
    if verdict == "replaced":
        raise WriterReplaced(f"another connection is now streaming the audio of session {sid!r}")
    if verdict == "out_of_step":
        raise WriterReplaced(
            f"the audio of session {sid!r} is at sample {number}, not where this connection was"
        )
    return number


class SessionStore:
    """Reads and writes one Redis (``redis.asyncio``) on behalf of the HTTP and WebSocket handlers."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._start = redis.register_script(_START)
        self._append = redis.register_script(_APPEND)
        self._end = redis.register_script(_END)
        self._announce = redis.register_script(_ANNOUNCE)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def create(
        self,
        record: SessionRecord,
        token_hashes: Mapping[str, str] | None = None,
        max_sessions: int | None = None,
    ) -> None:
        """Write the session hash (with its tokens' hashes), then announce the session to the workers.

        Two commands rather than one transaction: the active set is not under the session's hash tag, and
        the order alone guarantees a worker never finds an id without its hash. With ``max_sessions``, the
        announcement is refused (:class:`AtCapacity`, the hash removed) when that many sessions are open.
        """
        sid = record.id
        fields: dict[Any, Any] = {
            "record": record.model_dump_json(),
            "status": "open",
            "samples": 0,
            "audio_ended": 0,
        }
        fields.update(token_hashes or {})
        await self._redis.hset(keys.session(sid), mapping=fields)
        if max_sessions is None:
            await self._redis.zadd(keys.sessions_active(), {sid: record.created_at})
        elif not await self._announce(
            keys=[keys.sessions_active()], args=[sid, repr(record.created_at), max_sessions]
        ):
            await self._redis.delete(keys.session(sid))
            raise AtCapacity(
                f"the service is at capacity: {max_sessions} sessions are open; try again when one has ended"
            )
        tracks = [t.name for t in record.tracks]
        log.info("session %s created (%s, tracks %s)", sid, record.language, tracks, extra={"session": sid})

    async def token_hashes(self, sid: str) -> dict[str, str | None]:
        """The SHA-256 of the session's tokens (None where the session has none)."""
        return await auth.stored_hashes(self._redis, sid)

    async def get(self, sid: str) -> SessionView | None:
        fields = await self._redis.hgetall(keys.session(sid))
        if not fields:
            return None
        text = {_text(k): _text(v) for k, v in fields.items()}
        if "record" not in text:
            return None
        return SessionView(
            record=SessionRecord.model_validate_json(text["record"]),
            status=text.get("status", "open"),
            samples=int(text.get("samples", "0")),
            audio_ended=text.get("audio_ended") == "1",
        )

    async def start(self, sid: str, writer: str) -> int:
        """Make ``writer`` the session's only audio writer; returns the samples accepted so far."""
        reply = await self._start(keys=[keys.session(sid)], args=[writer])
        return _verdict(reply, sid)

    async def append(
        self, sid: str, writer: str, pcm: bytes, maxlen: int, at_sample: int | None = None
    ) -> int:
        """Append one chunk of PCM; returns the absolute index of its first sample.

        ``at_sample``: where the writer knows the chunk starts. Given, the append is idempotent: sent twice
        (a retry after a lost reply), the chunk is stored once.
        """
        samples = len(pcm) // BYTES_PER_SAMPLE
        expected = "" if at_sample is None else str(at_sample)
        reply = await self._append(
            keys=[keys.session(sid), keys.audio(sid)],
            args=[writer, samples, pcm, repr(time.time()), maxlen, expected],
        )
        return _verdict(reply, sid)

    async def end(self, sid: str, writer: str) -> int:
        """Append the single ``end`` entry; returns the total number of samples of the session."""
        reply = await self._end(keys=[keys.session(sid), keys.audio(sid)], args=[writer, repr(time.time())])
        total = _verdict(reply, sid)
        log.info("session %s audio ended after %d samples", sid, total, extra={"session": sid})
        return total
