"""Who runs which session: leases with a fencing epoch, and workers advertising their free room.

A worker owns a session while ``keys.lease(sid)`` holds its id (SET NX PX ttl, renewed by heartbeat).
Every claim increments ``keys.epoch(sid)``; the new value is the fencing token every commit is checked
against, so a worker that lost its lease (paused, partitioned, presumed dead) can never write again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from common.contract import keys

log = logging.getLogger(__name__)

CLAIM_SCRIPT = """
-- KEYS: 1 lease, 2 epoch; ARGV: 1 worker id, 2 ttl ms. Returns the new epoch, or nil if held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""

RENEW_SCRIPT = """
-- KEYS: 1 lease, 2 epoch; ARGV: 1 worker id, 2 ttl ms, 3 token. 1 if renewed, 0 if lost.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

RELEASE_SCRIPT = """
-- KEYS: 1 lease, 2 epoch; ARGV: 1 worker id, 2 token. 1 if released, 0 if it was not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

STALE_WORKER_TTLS = 10
"""A worker silent for this many lease TTLs is removed from the worker set by whoever notices."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A session held by a worker, with the fencing token its commits must carry."""

    sid: str
    worker_id: str
    token: int


@dataclass(frozen=True, slots=True)
class Room:
    """One worker's advertisement: how many sessions it may run and how many it runs."""

    worker_id: str
    capacity: int
    owned: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.owned)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


# -- decisions (pure) ---------------------------------------------------------------------------
def unowned(active: Sequence[str], leased: Sequence[bool], mine: Iterable[str]) -> list[str]:
    """Active sessions that nobody holds a live lease on, oldest first."""
    owned = set(mine)
    return [sid for sid, held in zip(active, leased, strict=True) if not held and sid not in owned]


def claim_quota(me: Room, others: Iterable[Room], waited_s: float, grace_s: float) -> int:
    """How many sessions this worker may claim now.

    A session goes to the worker with the most free room; workers with as much room race for it and the
    lease decides. A session that has waited longer than ``grace_s`` (its best worker may be stuck, or it
    lost its worker) goes to any worker with room.
    """
    if me.free == 0:
        return 0
    if waited_s >= grace_s:
        return me.free
    best_other = max((r.free for r in others if r.worker_id != me.worker_id), default=0)
    return me.free if me.free >= best_other else 0


def live_rooms(rows: Iterable[tuple[str, Sequence[Any]]]) -> list[Room]:
    """Rooms from (worker id, [capacity, owned]) rows; workers whose hash expired are skipped."""
    rooms = []
    for worker_id, (capacity, owned) in rows:
        if capacity is None or owned is None:
            continue
        rooms.append(Room(worker_id, int(capacity), int(owned)))
    return rooms


# -- Redis adapter ------------------------------------------------------------------------------
class Leases:
    """Claims, renews and releases session leases for one worker, and advertises its room."""

    def __init__(self, redis: Redis, worker_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._claim: Any = redis.register_script(CLAIM_SCRIPT)
        self._renew: Any = redis.register_script(RENEW_SCRIPT)
        self._release: Any = redis.register_script(RELEASE_SCRIPT)

    async def claim(self, sid: str) -> Lease | None:
        """Take the session if no one holds it; the lease carries the new epoch."""
        token = await self._claim(keys=[keys.lease(sid), keys.epoch(sid)], args=[self.worker_id, self.ttl_ms])
        if token is None:
            return None
        return Lease(sid, self.worker_id, int(token))

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it is no longer ours (the session must be dropped)."""
        kept = await self._renew(
            keys=[keys.lease(lease.sid), keys.epoch(lease.sid)],
            args=[self.worker_id, self.ttl_ms, lease.token],
        )
        return bool(kept)

    async def release(self, lease: Lease) -> bool:
        """Give the session back at once, so another worker may take it over without waiting."""
        done = await self._release(
            keys=[keys.lease(lease.sid), keys.epoch(lease.sid)], args=[self.worker_id, lease.token]
        )
        return bool(done)

    async def unowned_sessions(self, mine: Iterable[str]) -> list[tuple[str, float]]:
        """(sid, created unix time) of active sessions with no live lease, oldest first."""
        rows: Any = await self.redis.zrange(keys.sessions_active(), 0, -1, withscores=True)
        active = [(_text(sid), float(score)) for sid, score in rows]
        valid = [(sid, score) for sid, score in active if keys.SESSION_ID.fullmatch(sid)]
        if not valid:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid, _ in valid:
                pipe.exists(keys.lease(sid))
            held = [bool(n) for n in await pipe.execute()]
        free = set(unowned([sid for sid, _ in valid], held, mine))
        return [(sid, score) for sid, score in valid if sid in free]

    async def advertise(self, capacity: int, owned: int) -> None:
        """Heartbeat of the worker itself: its room (a hash with a TTL) and its last-seen time."""
        now = time.time()
        name = keys.worker(self.worker_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(name, mapping={"capacity": capacity, "owned": owned, "host": socket.gethostname()})
            pipe.pexpire(name, self.ttl_ms)
            pipe.zadd(keys.workers(), {self.worker_id: now})
            pipe.zremrangebyscore(keys.workers(), "-inf", now - STALE_WORKER_TTLS * self.ttl_ms / 1000)
            await pipe.execute()

    async def withdraw(self) -> None:
        """Stop advertising (graceful stop)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.worker(self.worker_id))
            pipe.zrem(keys.workers(), self.worker_id)
            await pipe.execute()

    async def other_rooms(self) -> list[Room]:
        """The room of every other worker seen within one lease TTL."""
        since = time.time() - self.ttl_ms / 1000
        seen: Any = await self.redis.zrangebyscore(keys.workers(), since, "+inf")
        ids = [_text(w) for w in seen]
        ids = [w for w in ids if w != self.worker_id]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hmget(keys.worker(worker_id), ["capacity", "owned"])
            values = await pipe.execute()
        return live_rooms(zip(ids, values, strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
