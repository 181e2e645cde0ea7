"""A session's captions in Redis: the caption stream (``keys.captions``), the live channel
(``keys.live``), the per-track sequence numbers (``keys.seq``) and the tracks' checkpoints
(``keys.state``), written by one fenced commit script and read back by the publisher.

A caption event travels as the JSON text of a :class:`~common.schemas.CaptionEvent`, in the caption
stream's :data:`EVENT` field and as the live channel's message. The worker writes it with :func:`encode`
(a final: :func:`final_template`, its ``seq`` put in by the script); the publisher reads it with
:func:`decode` and sends displays that very text. Both forms are the event's canonical JSON.

The commit script checks the fencing token first (:data:`~common.contract.leases.FENCE_LUA`), then gives
every final the next per-track sequence number, appends it to the caption stream, saves the track's
checkpoint and publishes the events. A commit is idempotent: when the saved checkpoint already equals
the one being committed, the step was applied before (a retry after its reply was lost to a connection
failure) and nothing is written again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from common.contract import keys
from common.contract.leases import FENCE_LUA, FENCED_PREFIX, Lease, run_fenced
from common.contract.scripts import Script, lua, text
from common.schemas import CaptionEvent, TrackCheckpoint

log = logging.getLogger(__name__)

EVENT = "event"
"""The field of a caption stream entry: the event's JSON."""

SEQ_FIELD = '"seq":'
"""How a final's sequence number begins in its JSON: ``seq`` is the last field of a caption event."""


@dataclass(frozen=True)
class Caption:
    """A caption event as read back: the event, the JSON text it was stored and published as, and (read
    from the caption stream) its entry id."""

    event: CaptionEvent
    text: str
    entry_id: str | None = None


def encode(event: CaptionEvent) -> str:
    """The JSON text of an event, as stored, published and sent to displays."""
    return event.model_dump_json()


def final_template(event: CaptionEvent) -> tuple[str, str]:
    """A final's JSON around its sequence number: ``head + str(seq) + tail`` is :func:`encode` of it."""
    rest = event.model_dump_json(exclude={"seq"})
    return rest[:-1] + "," + SEQ_FIELD, rest[-1]


def decode(raw: Any, entry_id: str | None = None) -> Caption | None:
    """A caption from Redis bytes or text; None (and a warning) for anything unreadable."""
    try:
        event = CaptionEvent.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("unreadable caption event skipped: %s", exc.errors()[0]["msg"] if exc.errors() else exc)
        return None
    return Caption(event, text(raw), entry_id)


@dataclass(frozen=True)
class TrackCommit:
    """Everything one step of one track writes: finals (numbered by the script), state, live tail."""

    track: str
    checkpoint: TrackCheckpoint
    finals: list[CaptionEvent] = field(default_factory=list)
    partial: CaptionEvent | None = None
    end: CaptionEvent | None = None
    skip: CaptionEvent | None = None


_COMMIT = Script(
    FENCE_LUA
    + lua(
        """
-- KEYS: 1 lease, 2 epoch, 3 seq hash, 4 caption stream, 5 track state, 6 live channel
-- ARGV: 1 worker id, 2 token, 3 track, 4 checkpoint JSON, 5 partial JSON or '', 6 end JSON or '',
--       7 skip JSON or '', then (head, tail) pairs: a final is head .. seq .. tail
-- Returns the seqs given to the finals, in order.
local why = fence(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if why then return redis.error_reply($FENCED .. ' ' .. why) end
if redis.call('GET', KEYS[5]) == ARGV[4] then
  return {}
end
local seqs = {}
for i = 8, #ARGV, 2 do
  local n = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  local event = ARGV[i] .. n .. ARGV[i + 1]
  redis.call('XADD', KEYS[4], '*', $EVENT, event)
  redis.call('PUBLISH', KEYS[6], event)
  seqs[#seqs + 1] = n
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[4], '*', $EVENT, ARGV[7])
  redis.call('PUBLISH', KEYS[6], ARGV[7])
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], '*', $EVENT, ARGV[6])
end
redis.call('SET', KEYS[5], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('PUBLISH', KEYS[6], ARGV[5])
end
if ARGV[6] ~= '' then
  redis.call('PUBLISH', KEYS[6], ARGV[6])
end
return seqs
""",
        EVENT=EVENT,
        FENCED=FENCED_PREFIX,
    )
)


def _optional(event: CaptionEvent | None) -> str:
    return "" if event is None else encode(event)


async def commit(redis: Any, lease: Lease, step: TrackCommit) -> list[int]:
    """Write one step atomically; the seqs given to its finals, in order. :class:`Fenced` once the lease
    is lost."""
    sid = lease.sid
    args = [
        step.track,
        step.checkpoint.model_dump_json(),
        _optional(step.partial),
        _optional(step.end),
        _optional(step.skip),
    ]
    for event in step.finals:
        args.extend(final_template(event))
    data = [keys.seq(sid), keys.captions(sid), keys.state(sid, step.track), keys.live(sid)]
    result = await run_fenced(_COMMIT, redis, lease, data, args)
    return [int(n) for n in result]


async def history(redis: Any, sid: str, after: str | None, page: int) -> AsyncIterator[Caption]:
    """The caption stream's events after entry ``after`` (from the start when None), oldest first,
    read ``page`` entries at a time; unreadable entries are skipped."""
    low = "-" if after is None else "(" + after
    while True:
        rows: Any = await redis.xrange(keys.captions(sid), min=low, max="+", count=page)
        for raw_id, fields in rows:
            entry = text(raw_id)
            low = "(" + entry
            raw = fields.get(EVENT.encode(), fields.get(EVENT))
            caption = decode(raw, entry) if raw is not None else None
            if caption is not None:
                yield caption
        if len(rows) < page:
            return


async def checkpoints(redis: Any, sid: str, tracks: list[str]) -> list[TrackCheckpoint | None]:
    """The saved checkpoint of each track (None where a track has none yet)."""
    saved = await redis.mget([keys.state(sid, track) for track in tracks])
    return [None if raw is None else TrackCheckpoint.model_validate_json(raw) for raw in saved]
