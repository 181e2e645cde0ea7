"""The session hash (``keys.session``) and the set of active sessions: the only code reading or writing them.

The hash holds the :class:`~common.schemas.SessionRecord` as JSON (:data:`RECORD`: what never changes
after creation) beside the fields that do: :data:`STATUS` (``open`` on creation, ``streaming`` once audio
starts, ``ended`` once the worker has flushed every track: the one place the status is kept, filled into
the record by :func:`load`), the :data:`SAMPLES` counter, whether the audio has ended, which connection
may write the audio (:data:`WRITER`) and the SHA-256 of the session's tokens.

Every change that must be exact runs as one script over the session's keys (atomic, and valid on Redis
Cluster because they share the session's hash tag): an audio chunk's ``sample0`` is read from the
counter, the chunk appended and the counter advanced in one step, so concurrent writers never produce
overlapping or missing sample ranges and nothing lands after the end entry. The worker's writes here
(the idle end, the close) are fenced like its commits (:data:`~common.contract.leases.FENCE_LUA`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import ValidationError
from redis.exceptions import ResponseError

from common.contract import audio, keys
from common.contract.leases import (
    FENCE_LUA,
    FENCED_PREFIX,
    Fenced,
    Lease,
    raise_if_fenced,
    renew,
    run_fenced,
)
from common.contract.scripts import Script, lua, optional_text, text
from common.errors import WspError
from common.schemas import SessionRecord, SessionStatus

log = logging.getLogger(__name__)

RECORD = "record"
STATUS = "status"
SAMPLES = "samples"
AUDIO_ENDED = "audio_ended"
AUDIO_ENDED_AT = "audio_ended_at"
ENDED_REASON = "ended_reason"
WRITER = "writer"
AUDIO_TOKEN_SHA256 = "audio_token_sha256"
READ_TOKEN_SHA256 = "read_token_sha256"
PARKED = "parked"
AUDIO_BUDGET = "audio_budget"
AUDIO_BUDGET_AT = "audio_budget_at"
"""Fields of the session hash."""

OPEN: SessionStatus = "open"
STREAMING: SessionStatus = "streaming"
ENDED: SessionStatus = "ended"
"""Values of :data:`STATUS`."""
YES, NO = "1", "0"
"""Values of :data:`AUDIO_ENDED`."""
IDLE = "idle"
"""The reason given when a worker ended a session's audio because none arrived for too long."""
OPERATOR = "operator"
"""The reason given when an operator ended a session's audio (the API key)."""

CLOSE_HOLD_MS = 10_000
"""How long the close keeps the lease: the session leaves the active set while its owner surely holds it."""


class AudioVerdict(Enum):
    """What a script that writes a session's audio answered."""

    OK = "ok"
    MISSING = "missing"
    """There is no such session."""
    CLOSED = "closed"
    """The session's audio (or the session itself) has ended."""
    REPLACED = "replaced"
    """Another connection started streaming the session's audio."""
    OUT_OF_STEP = "out_of_step"
    """The chunk does not start where the session's audio stands."""
    MOVED = "moved"
    """Audio arrived after the entry an idle end was based on: the session is not idle."""
    TOO_FAST = "too_fast"
    """The chunk would take the session's audio past its pace: nothing was stored."""


@dataclass(frozen=True)
class AudioReply:
    """A verdict and a sample count: where the audio stands, where the chunk went, or the total."""

    verdict: AudioVerdict
    samples: int


@dataclass(frozen=True)
class SessionView:
    """A session as stored: its record (status included) and the live fields of its hash."""

    record: SessionRecord
    samples: int
    audio_ended: bool

    @property
    def status(self) -> SessionStatus:
        return self.record.status


@dataclass(frozen=True)
class Pace:
    """How fast a writer may send a session's audio: a token bucket of samples (see the append script)."""

    samples_per_s: float
    """What the bucket fills by each second; 0: no bound."""
    burst_samples: int
    """What the bucket holds at most: audio that may be sent at once above the pace."""
    min_cost_samples: int = 0
    """What a chunk costs at least, so that tiny frames cannot multiply stream entries."""


@dataclass(frozen=True)
class Activity:
    """Where a session's audio stands, as a worker deciding about it sees it (:func:`activities`)."""

    sid: str
    status: SessionStatus
    newest: str | None
    """The id of the newest entry of its audio stream; None while the stream is empty."""
    parked_at: str | None
    """The newest entry when its worker last gave it back for lack of audio; None if never."""
    now_ms: int
    """The Redis server's clock when this was read."""

    @property
    def wants_worker(self) -> bool:
        """There is audio (or the end) no worker has seen: a worker should run the session."""
        return self.newest is not None and self.newest != self.parked_at

    def idle_s(self, created_at: float) -> float:
        """How long nothing has arrived: since the newest entry (the server's clock), else since creation."""
        if self.newest is not None:
            return max(0.0, (self.now_ms - int(self.newest.partition("-")[0])) / 1000)
        return max(0.0, self.now_ms / 1000 - created_at)


class UnreadableSession(WspError):
    """The session hash holds a record this version cannot read."""


_NAMES = {
    "RECORD": RECORD,
    "STATUS": STATUS,
    "SAMPLES": SAMPLES,
    "AUDIO_ENDED": AUDIO_ENDED,
    "AUDIO_ENDED_AT": AUDIO_ENDED_AT,
    "ENDED_REASON": ENDED_REASON,
    "WRITER": WRITER,
    "STREAMING": STREAMING,
    "ENDED": ENDED,
    "YES": YES,
    "IDLE": IDLE,
    "PARKED": PARKED,
    "AUDIO_BUDGET": AUDIO_BUDGET,
    "AUDIO_BUDGET_AT": AUDIO_BUDGET_AT,
    "KIND": audio.KIND,
    "SAMPLE0": audio.SAMPLE0,
    "PCM": audio.PCM,
    "AT": audio.AT,
    "REASON": audio.REASON,
    "AUDIO_KIND": audio.AUDIO_KIND,
    "END_KIND": audio.END_KIND,
    "NONE_SEEN": audio.NONE_SEEN,
    "FENCED": FENCED_PREFIX,
    **{verdict.name: verdict.value for verdict in AudioVerdict},
}

_START = Script(
    lua(
        """
-- KEYS: 1 session hash; ARGV: 1 writer. Returns {verdict, samples so far}.
local f = redis.call('HMGET', KEYS[1], $RECORD, $STATUS, $AUDIO_ENDED, $SAMPLES)
if not f[1] then return {$MISSING, 0} end
if f[2] == $ENDED or f[3] == $YES then return {$CLOSED, 0} end
redis.call('HSET', KEYS[1], $WRITER, ARGV[1])
if f[2] ~= $STREAMING then redis.call('HSET', KEYS[1], $STATUS, $STREAMING) end
return {$OK, tonumber(f[4] or '0')}
""",
        **_NAMES,
    )
)

_APPEND = Script(
    lua(
        """
-- KEYS: 1 session hash, 2 audio stream; ARGV: 1 writer, 2 samples in the chunk, 3 pcm, 4 at, 5 maxlen,
-- 6 the sample0 the writer expects ('' when it does not say), 7 samples per second the session may send
-- beyond its burst (0: no bound), 8 the burst in samples, 9 the samples the chunk costs.
-- Returns {verdict, sample0 of the chunk} (with TOO_FAST: the samples the session may send now).
-- A writer that says where its chunk starts makes the append idempotent: when the counter already stands
-- one chunk further, this very chunk was appended and only the reply was lost, so nothing is appended twice.
-- The pace is a token bucket kept in the hash on the server's clock, so it holds across reconnections and
-- ingest processes: it fills at ARGV[7] up to ARGV[8], and a chunk it cannot pay for is not stored.
local f = redis.call('HMGET', KEYS[1], $RECORD, $STATUS, $AUDIO_ENDED, $WRITER, $SAMPLES,
  $AUDIO_BUDGET, $AUDIO_BUDGET_AT)
if not f[1] then return {$MISSING, 0} end
if f[2] == $ENDED or f[3] == $YES then return {$CLOSED, 0} end
if f[4] ~= ARGV[1] then return {$REPLACED, 0} end
local sample0 = f[5] or '0'
if ARGV[6] ~= '' and tonumber(sample0) ~= tonumber(ARGV[6]) then
  if tonumber(sample0) == tonumber(ARGV[6]) + tonumber(ARGV[2]) then return {$OK, tonumber(ARGV[6])} end
  return {$OUT_OF_STEP, tonumber(sample0)}
end
local rate = tonumber(ARGV[7])
if rate > 0 then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local burst = tonumber(ARGV[8])
  local budget = tonumber(f[6] or ARGV[8])
  local since = tonumber(f[7] or now)
  budget = math.min(burst, budget + math.max(0, now - since) * rate)
  if budget < tonumber(ARGV[9]) then return {$TOO_FAST, math.floor(budget)} end
  redis.call('HSET', KEYS[1], $AUDIO_BUDGET, budget - tonumber(ARGV[9]), $AUDIO_BUDGET_AT, now)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
  $KIND, $AUDIO_KIND, $SAMPLE0, sample0, $PCM, ARGV[3], $AT, ARGV[4])
redis.call('HINCRBY', KEYS[1], $SAMPLES, ARGV[2])
return {$OK, tonumber(sample0)}
""",
        **_NAMES,
    )
)

_END = Script(
    FENCE_LUA
    + lua(
        """
-- KEYS: 1 session hash, 2 audio stream, 3 lease, 4 epoch
-- ARGV: 1 at, 2 writer: the connection streaming the audio, or '' for an end by someone else, which
--   gives 3 the reason (idle, operator), 4 and 5 a worker's id and token when it holds the session
--   (fenced; '' when not) and 6 the newest entry it has read: the audio is ended only if nothing arrived
--   after that entry ('' ends it whatever arrived). Returns {verdict, the session's total samples}.
-- Ingest's end sent again by its writer (a retry after a lost reply) answers as the first one did.
local f = redis.call('HMGET', KEYS[1], $RECORD, $STATUS, $AUDIO_ENDED, $WRITER, $SAMPLES)
if not f[1] then return {$MISSING, 0} end
local samples = f[5] or '0'
local by_writer = ARGV[2] ~= ''
if by_writer and f[3] == $YES and f[4] == ARGV[2] then return {$OK, tonumber(samples)} end
if f[2] == $ENDED or f[3] == $YES then return {$CLOSED, 0} end
local entry = {$KIND, $END_KIND, $SAMPLE0, samples, $AT, ARGV[1]}
local marks = {$AUDIO_ENDED, $YES, $AUDIO_ENDED_AT, ARGV[1]}
if by_writer then
  if f[4] ~= ARGV[2] then return {$REPLACED, 0} end
else
  if ARGV[4] ~= '' then
    local why = fence(KEYS[3], KEYS[4], ARGV[4], ARGV[5])
    if why then return redis.error_reply($FENCED .. ' ' .. why) end
  end
  if ARGV[6] ~= '' then
    local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    local seen = $NONE_SEEN
    if #newest > 0 then seen = newest[1][1] end
    if seen ~= ARGV[6] then return {$MOVED, 0} end
  end
  table.insert(entry, $REASON)
  table.insert(entry, ARGV[3])
  table.insert(marks, $ENDED_REASON)
  table.insert(marks, ARGV[3])
end
redis.call('XADD', KEYS[2], '*', unpack(entry))
redis.call('HSET', KEYS[1], unpack(marks))
return {$OK, tonumber(samples)}
""",
        **_NAMES,
    )
)

_PARK = Script(
    FENCE_LUA
    + lua(
        """
-- KEYS: 1 lease, 2 epoch, 3 session hash, 4 audio stream; ARGV: 1 worker id, 2 token, 3 the newest entry
-- the worker has read. 1 if the session was parked (its lease is gone), 0 if audio came after that entry.
local why = fence(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if why then return redis.error_reply($FENCED .. ' ' .. why) end
local newest = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
if #newest == 0 or newest[1][1] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[3], $PARKED, ARGV[3])
redis.call('DEL', KEYS[1])
return 1
""",
        **_NAMES,
    )
)

_ACTIVITY = Script(
    lua(
        """
-- KEYS: 1 session hash, 2 audio stream. Read only. Returns {status ('' without a record), the newest
-- entry's id ('' when the stream is empty), the entry the session was parked at ('' if never),
-- the server's clock in ms}.
local f = redis.call('HMGET', KEYS[1], $RECORD, $STATUS, $PARKED)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if not f[1] then return {'', '', '', now} end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = ''
if #newest > 0 then id = newest[1][1] end
return {f[2] or '', id, f[3] or '', now}
""",
        **_NAMES,
    )
)

_CLOSE = Script(
    FENCE_LUA
    + lua(
        """
-- KEYS: 1 lease, 2 epoch, 3 session hash, 4 audio stream, then every key of the session's data
-- ARGV: 1 worker id, 2 token, 3 retention ms
local why = fence(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if why then return redis.error_reply($FENCED .. ' ' .. why) end
redis.call('HSET', KEYS[3], $STATUS, $ENDED)
redis.call('XTRIM', KEYS[4], 'MAXLEN', 1)
for i = 5, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1
""",
        **_NAMES,
    )
)

_ANNOUNCE = Script(
    """
-- KEYS: 1 active sessions; ARGV: 1 sid, 2 created, 3 most sessions open at once. 1 if announced, 0 if full.
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""
)


def _reply(raw: Any) -> AudioReply:
    return AudioReply(AudioVerdict(text(raw[0])), int(raw[1]))


def _status(raw: Any) -> SessionStatus:
    value = optional_text(raw)
    for status in (OPEN, STREAMING, ENDED):
        if value == status:
            return status
    return OPEN


# -- the record ---------------------------------------------------------------------------------
async def create(
    redis: Any, record: SessionRecord, token_hashes: Mapping[str, str], max_sessions: int | None = None
) -> bool:
    """Write the session hash, then announce the session to the workers; False (nothing kept) when full.

    Two commands rather than one transaction: the active set is not under the session's hash tag, and the
    order alone guarantees a worker never finds an id without its hash. With ``max_sessions``, the
    announcement is refused (and the hash removed) when that many sessions are open.
    """
    sid = record.id
    fields: dict[str, Any] = {
        RECORD: record.model_dump_json(exclude={"status"}),
        STATUS: record.status,
        SAMPLES: 0,
        AUDIO_ENDED: NO,
        **token_hashes,
    }
    await redis.hset(keys.session(sid), mapping=fields)
    if max_sessions is None:
        await redis.zadd(keys.sessions_active(), {sid: record.created_at})
        return True
    if await _ANNOUNCE(redis, [keys.sessions_active()], [sid, repr(record.created_at), max_sessions]):
        return True
    await redis.delete(keys.session(sid))
    return False


async def load(redis: Any, sid: str) -> SessionView | None:
    """The session as stored, its record's status filled in from :data:`STATUS`; None if there is none.

    :class:`UnreadableSession` when the record is not one this version can read.
    """
    raw, status, samples, ended = await redis.hmget(keys.session(sid), [RECORD, STATUS, SAMPLES, AUDIO_ENDED])
    if raw is None:
        return None
    try:
        record = SessionRecord.model_validate_json(raw)
    except ValidationError as exc:
        log.error("session %s has an unreadable record: %s", sid, exc, extra={"session": sid})
        raise UnreadableSession(f"session {sid} has a record this version cannot read") from exc
    return SessionView(
        record.model_copy(update={"status": _status(status)}),
        samples=int(samples or 0),
        audio_ended=optional_text(ended) == YES,
    )


async def token_hashes(redis: Any, sid: str) -> dict[str, str | None]:
    """The SHA-256 of the session's tokens by field (None where there is no such session or token)."""
    values = await redis.hmget(keys.session(sid), [AUDIO_TOKEN_SHA256, READ_TOKEN_SHA256])
    return {AUDIO_TOKEN_SHA256: optional_text(values[0]), READ_TOKEN_SHA256: optional_text(values[1])}


async def active(redis: Any) -> list[tuple[str, float]]:
    """(id, creation time) of every session that wants a worker, oldest first (ids unfit for keys skipped)."""
    rows: Any = await redis.zrange(keys.sessions_active(), 0, -1, withscores=True)
    found = [(text(sid), float(score)) for sid, score in rows]
    return [(sid, created) for sid, created in found if keys.SESSION_ID.fullmatch(sid)]


# -- the audio ----------------------------------------------------------------------------------
async def start_audio(redis: Any, sid: str, writer: str) -> AudioReply:
    """Make ``writer`` the session's only audio writer (status ``streaming``); the samples so far."""
    return _reply(await _START(redis, [keys.session(sid)], [writer]))


async def append_audio(
    redis: Any,
    sid: str,
    writer: str,
    pcm: bytes,
    samples: int,
    maxlen: int,
    at: float,
    at_sample: int | None,
    pace: Pace | None = None,
) -> AudioReply:
    """Append one chunk of ``samples`` samples (the stream kept to about ``maxlen`` entries).

    The reply's samples: the absolute index of the chunk's first sample. ``at_sample``: where the writer
    knows the chunk starts; given, the append is idempotent (a retry stores the chunk once). ``pace``:
    the chunk is refused (:attr:`AudioVerdict.TOO_FAST`, nothing stored; the reply's samples: what the
    session may send now) when the session's audio would run ahead of it.
    """
    expected = "" if at_sample is None else str(at_sample)
    rate, burst, cost = 0.0, 0, samples
    if pace is not None and pace.samples_per_s > 0:
        rate, burst, cost = pace.samples_per_s, pace.burst_samples, max(samples, pace.min_cost_samples)
    args = [writer, samples, pcm, repr(at), maxlen, expected, repr(rate), burst, cost]
    return _reply(await _APPEND(redis, [keys.session(sid), keys.audio(sid)], args))


def _end_keys(sid: str) -> list[str]:
    return [keys.session(sid), keys.audio(sid), keys.lease(sid), keys.epoch(sid)]


async def end_audio(redis: Any, sid: str, writer: str, at: float) -> AudioReply:
    """Append the single end entry for ``writer``; the reply's samples: the session's total."""
    return _reply(await _END(redis, _end_keys(sid), [repr(at), writer]))


async def end_idle_audio(redis: Any, lease: Lease, seen: str, at: float) -> bool:
    """The worker ends a session's audio for its silent sender, if nothing arrived after entry ``seen``.

    The end entry then takes the usual way (every track is flushed, displays get ``end``) and ingest
    refuses more audio. Fenced: :class:`Fenced` once ``lease`` is lost. True if it ended the audio.
    """
    args = [repr(at), "", IDLE, *lease.fence_args(), seen]
    try:
        reply = _reply(await _END(redis, _end_keys(lease.sid), args))
    except ResponseError as exc:
        raise_if_fenced(exc, lease)
        raise
    return reply.verdict is AudioVerdict.OK


async def end_unheld_audio(redis: Any, sid: str, reason: str, seen: str | None, at: float) -> AudioVerdict:
    """End a session's audio on behalf of nobody holding it: an idle session nobody runs (``seen``: the
    newest entry it was judged by, :data:`~common.contract.audio.NONE_SEEN` if none; the end is not
    written if audio came since), or an operator's end (``seen`` None: whatever arrived).

    Like any end, the entry makes a worker flush every track and close the session.
    """
    args = [repr(at), "", reason, "", "", "" if seen is None else seen]
    return _reply(await _END(redis, _end_keys(sid), args)).verdict


async def park(redis: Any, lease: Lease, seen: str) -> bool:
    """Give a session whose audio has stopped back (its lease is deleted), if nothing arrived after entry
    ``seen``; it waits without a worker until audio comes again (:attr:`Activity.wants_worker`).

    The checkpoints it resumes from are already saved (every step commits its own). Fenced.
    """
    return bool(
        await run_fenced(_PARK, redis, lease, [keys.session(lease.sid), keys.audio(lease.sid)], [seen])
    )


async def activities(redis: Any, sids: Sequence[str]) -> list[Activity | None]:
    """Where each session's audio stands (None for a session without a record), in one round trip."""
    if not sids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            await _ACTIVITY(pipe, [keys.session(sid), keys.audio(sid)], [])
        rows = await pipe.execute()
    found: list[Activity | None] = []
    for sid, (status, newest, parked, now) in zip(sids, rows, strict=True):
        if not text(status):
            found.append(None)
            continue
        found.append(Activity(sid, _status(status), text(newest) or None, text(parked) or None, int(now)))
    return found


# -- the end ------------------------------------------------------------------------------------
async def close(redis: Any, lease: Lease, tracks: Sequence[str], retention_ms: int) -> None:
    """Every track has ended: mark the session ended, take it off the active set, let its data expire.

    The audio is no longer needed (only the end entry is kept); captions stay for replay and export until
    ``retention_ms`` has passed. Fenced: the lease is renewed first (so the session leaves the active set
    only by its owner's hand) and checked again by the script; :class:`Fenced` once it is lost.
    """
    sid = lease.sid
    if not await renew(redis, lease, CLOSE_HOLD_MS):
        raise Fenced(f"session {sid}: lease is not held by {lease.worker_id}")
    close_keys = [
        *lease.fence_keys(),
        keys.session(sid),
        keys.audio(sid),
        *keys.session_keys(sid, list(tracks)),
    ]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.sessions_active(), sid)
        await _CLOSE(pipe, close_keys, [*lease.fence_args(), retention_ms])
        try:
            await pipe.execute()
        except ResponseError as exc:
            raise_if_fenced(exc, lease)
            raise
