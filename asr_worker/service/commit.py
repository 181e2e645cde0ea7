"""The atomic commit of one step of one track: captions, state and live events in one Redis script.

The script first checks the fencing token: the lease must still name this worker and the session's
epoch must equal the token the worker got when it claimed the session. Only then does it give every
final caption the next per-track sequence number (HINCRBY), append it to the caption stream, save the
track's checkpoint and publish the events. A worker that lost its lease can therefore never write.

A commit is idempotent: when the saved checkpoint already equals the one being committed, the step was
applied before (a retry after its reply was lost to a connection failure) and nothing is written again.
The same fencing guards :data:`TRIM_SCRIPT`, which drops audio no track can need any more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from asr_worker.core.words import Word, join_words
from asr_worker.service.leases import Lease
from common.contract import keys
from common.errors import WspError
from common.schemas import CaptionEvent, TrackCheckpoint

SEQ_PLACEHOLDER = -1
"""The ``seq`` a final event carries before the script gives it its number."""

FENCED_PREFIX = "FENCED"

COMMIT_SCRIPT = """
-- KEYS: 1 lease, 2 epoch, 3 seq hash, 4 caption stream, 5 track state, 6 live channel
-- ARGV: 1 worker id, 2 fencing token, 3 track, 4 checkpoint JSON, 5 partial JSON or '',
--       6 end JSON or '', 7 skip JSON or '', then (head, tail) pairs: a final is head .. seq .. tail
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease is not held by ' .. ARGV[1])
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('FENCED epoch is not ' .. ARGV[2])
end
if redis.call('GET', KEYS[5]) == ARGV[4] then
  return {}
end
local seqs = {}
for i = 8, #ARGV, 2 do
  local n = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  local event = ARGV[i] .. n .. ARGV[i + 1]
  redis.call('XADD', KEYS[4], '*', 'event', event)
  redis.call('PUBLISH', KEYS[6], event)
  seqs[#seqs + 1] = n
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'event', ARGV[7])
  redis.call('PUBLISH', KEYS[6], ARGV[7])
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'event', ARGV[6])
end
redis.call('SET', KEYS[5], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('PUBLISH', KEYS[6], ARGV[5])
end
if ARGV[6] ~= '' then
  redis.call('PUBLISH', KEYS[6], ARGV[6])
end
return seqs
"""

TRIM_SCRIPT = """
-- KEYS: 1 lease, 2 epoch, 3 audio stream; ARGV: 1 worker id, 2 fencing token, 3 oldest entry id to keep.
-- Returns the number of entries trimmed (0 when the lease is no longer held).
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
return redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])
"""


class Fenced(WspError):
    """The session's lease or epoch moved on: another worker owns it now, this one must drop it."""


@dataclass(frozen=True)
class TrackCommit:
    """Everything one step of one track writes: finals (numbered by the script), state, live tail."""

    track: str
    checkpoint: TrackCheckpoint
    finals: list[CaptionEvent] = field(default_factory=list)
    partial: CaptionEvent | None = None
    end: CaptionEvent | None = None
    skip: CaptionEvent | None = None


def final_event(track: str, words: list[Word], joiner: str, now: float | None = None) -> CaptionEvent:
    """One final caption from the words a step committed (its ``seq`` is assigned at commit)."""
    return CaptionEvent(
        type="final",
        track=track,
        seq=SEQ_PLACEHOLDER,
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


def caption_template(event: CaptionEvent) -> tuple[str, str]:
    """Split a final event's JSON around its placeholder ``seq`` so the script can put the number in."""
    marker = f'"seq":{SEQ_PLACEHOLDER}'
    text = event.model_copy(update={"seq": SEQ_PLACEHOLDER}).model_dump_json()
    head, found, tail = text.partition(marker)
    if not found:
        raise ValueError("caption JSON has no seq field")
    return head + '"seq":', tail


def script_args(worker_id: str, token: int, commit: TrackCommit) -> list[str]:
    args = [
        worker_id,
        str(token),
        commit.track,
        commit.checkpoint.model_dump_json(),
        commit.partial.model_dump_json() if commit.partial else "",
        commit.end.model_dump_json() if commit.end else "",
        commit.skip.model_dump_json() if commit.skip else "",
    ]
    for event in commit.finals:
        args.extend(caption_template(event))
    return args


def script_keys(sid: str, track: str) -> list[str]:
    return [
        keys.lease(sid),
        keys.epoch(sid),
        keys.seq(sid),
        keys.captions(sid),
        keys.state(sid, track),
        keys.live(sid),
    ]


class Committer:
    """Runs the commit script on one Redis connection pool."""

    def __init__(self, redis: Redis) -> None:
        self._script: Any = redis.register_script(COMMIT_SCRIPT)
        self._trim: Any = redis.register_script(TRIM_SCRIPT)

    async def trim_audio(self, lease: Lease, keep_from: str) -> int:
        """Drop the session's audio entries before ``keep_from`` (while the lease holds); how many went."""
        args = [lease.worker_id, lease.token, keep_from]
        done = await self._trim(
            keys=[keys.lease(lease.sid), keys.epoch(lease.sid), keys.audio(lease.sid)], args=args
        )
        return int(done)

    async def commit(self, lease: Lease, commit: TrackCommit) -> list[int]:
        """Write one step atomically; the assigned seqs of its finals, in order. Raises :class:`Fenced`."""
        try:
            args = script_args(lease.worker_id, lease.token, commit)
            result = await self._script(keys=script_keys(lease.sid, commit.track), args=args)
        except ResponseError as exc:
            if str(exc).startswith(FENCED_PREFIX):
                raise Fenced(f"session {lease.sid}: {exc}") from exc
            raise
        return [int(n) for n in result]
