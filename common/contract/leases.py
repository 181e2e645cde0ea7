"""Who runs which session, as stored in Redis: leases, the fencing epoch, and workers' advertisements.

A worker owns a session while ``keys.lease(sid)`` holds its id (``SET NX PX``, renewed by heartbeat).
Every claim increments ``keys.epoch(sid)``; the new value is the fencing token. :data:`FENCE_LUA` is the
check every write of a worker begins with (commit, audio trim, idle end, close): the lease must still
name the worker and the epoch must still equal its token, so a worker that lost its lease (paused,
partitioned, presumed dead) can never write again.

A worker advertises itself with a hash ``keys.worker(id)`` (:data:`CAPACITY`, :data:`OWNED`,
:data:`HOST`; it expires with the lease TTL) and its last heartbeat time in ``keys.workers()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from common.contract import keys
from common.contract.scripts import Script, optional_text, text
from common.errors import WspError

CAPACITY = "capacity"
OWNED = "owned"
HOST = "host"
"""Fields of a worker's advertisement hash: sessions it may run, sessions it runs, its host name."""

FENCED_PREFIX = "FENCED"
"""How a fenced script's error reply begins."""

FENCE_LUA = """
-- nil when the worker still holds the session under this token, else why not
local function fence(lease_key, epoch_key, worker, token)
  if redis.call('GET', lease_key) ~= worker then return 'lease is not held by ' .. worker end
  if redis.call('GET', epoch_key) ~= token then return 'epoch is not ' .. token end
  return nil
end
"""
"""A Lua function that scripts writing on a worker's behalf start with (prepended to their source)."""


class Fenced(WspError):
    """The session's lease or epoch moved on: another worker owns it now, this one must drop it."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A session held by a worker, with the fencing token its writes must carry."""

    sid: str
    worker_id: str
    token: int

    def fence_keys(self) -> list[str]:
        """The keys :data:`FENCE_LUA` reads, in the order the fenced scripts take them first."""
        return [keys.lease(self.sid), keys.epoch(self.sid)]

    def fence_args(self) -> list[str]:
        """The arguments :data:`FENCE_LUA` checks, in the order the fenced scripts take them first."""
        return [self.worker_id, str(self.token)]


async def run_fenced(
    script: Script, redis: Any, lease: Lease, more_keys: Sequence[str], more_args: Sequence[Any]
) -> Any:
    """Run a fenced script (its first keys and arguments are the lease's); :class:`Fenced` if refused."""
    try:
        return await script(redis, [*lease.fence_keys(), *more_keys], [*lease.fence_args(), *more_args])
    except ResponseError as exc:
        raise_if_fenced(exc, lease)
        raise


def raise_if_fenced(exc: ResponseError, lease: Lease) -> None:
    """:class:`Fenced` for a fenced script's refusal (other errors are left to the caller)."""
    if str(exc).startswith(FENCED_PREFIX):
        raise Fenced(f"session {lease.sid}: {exc}") from exc


_CLAIM = Script(
    """
-- KEYS: 1 lease, 2 epoch; ARGV: 1 worker id, 2 ttl ms. Returns the new epoch, or nil if held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""
)

_RENEW = Script(
    FENCE_LUA
    + """
-- KEYS: 1 lease, 2 epoch; ARGV: 1 worker id, 2 token, 3 ttl ms. 1 if renewed, 0 if lost.
if fence(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

_RELEASE = Script(
    FENCE_LUA
    + """
-- KEYS: 1 lease, 2 epoch; ARGV: 1 worker id, 2 token. 1 if released, 0 if it was not ours.
if fence(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
return redis.call('DEL', KEYS[1])
"""
)


async def claim(redis: Any, sid: str, worker_id: str, ttl_ms: int) -> Lease | None:
    """Take the session if no one holds it; the lease carries the new epoch."""
    token = await _CLAIM(redis, [keys.lease(sid), keys.epoch(sid)], [worker_id, ttl_ms])
    return None if token is None else Lease(sid, worker_id, int(token))


async def renew(redis: Any, lease: Lease, ttl_ms: int) -> bool:
    """Extend the lease to ``ttl_ms`` from now; False when it is no longer ours."""
    return bool(await _RENEW(redis, lease.fence_keys(), [*lease.fence_args(), ttl_ms]))


async def release(redis: Any, lease: Lease) -> bool:
    """Give the session back at once; False when it was not ours any more."""
    return bool(await _RELEASE(redis, lease.fence_keys(), lease.fence_args()))


async def holder(redis: Any, sid: str) -> str | None:
    """The id of the worker holding the session's lease, if any."""
    return optional_text(await redis.get(keys.lease(sid)))


async def epoch(redis: Any, sid: str) -> int:
    """The session's fencing epoch: how many times it was claimed (0: never)."""
    return int(await redis.get(keys.epoch(sid)) or 0)


async def leased(redis: Any, sids: Sequence[str]) -> list[bool]:
    """Whether each session has a live lease."""
    async with redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.exists(keys.lease(sid))
        return [bool(n) for n in await pipe.execute()]


# -- workers' advertisements --------------------------------------------------------------------
async def advertise(
    redis: Any,
    worker_id: str,
    capacity: int,
    owned: int,
    host: str,
    ttl_ms: int,
    now: float,
    forget_before: float,
) -> None:
    """A worker's heartbeat: its room (a hash living ``ttl_ms``) and its last-seen time ``now``.

    Workers last seen before ``forget_before`` are dropped from the set of workers.
    """
    name = keys.worker(worker_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(name, mapping={CAPACITY: capacity, OWNED: owned, HOST: host})
        pipe.pexpire(name, ttl_ms)
        pipe.zadd(keys.workers(), {worker_id: now})
        pipe.zremrangebyscore(keys.workers(), "-inf", forget_before)
        await pipe.execute()


async def withdraw(redis: Any, worker_id: str) -> None:
    """Stop advertising a worker (graceful stop)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.worker(worker_id))
        pipe.zrem(keys.workers(), worker_id)
        await pipe.execute()


async def seen_since(redis: Any, since: float) -> list[str]:
    """Ids of the workers whose last heartbeat is at or after ``since`` (unix seconds)."""
    return [text(w) for w in await redis.zrangebyscore(keys.workers(), since, "+inf")]


async def last_heartbeat(redis: Any, worker_id: str) -> float | None:
    """When the worker last advertised itself (unix seconds); None if it never did or was forgotten."""
    score = await redis.zscore(keys.workers(), worker_id)
    return None if score is None else float(score)


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a worker's advertisement hash says."""

    worker_id: str
    capacity: int
    owned: int
    host: str


async def advertisements(redis: Any, worker_ids: Iterable[str]) -> list[Advertisement]:
    """The advertisements of these workers; workers whose hash has expired are left out."""
    ids = list(worker_ids)
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hmget(keys.worker(worker_id), [CAPACITY, OWNED, HOST])
        rows = await pipe.execute()
    found = []
    for worker_id, (capacity, owned, host) in zip(ids, rows, strict=True):
        if capacity is not None and owned is not None:
            found.append(Advertisement(worker_id, int(capacity), int(owned), optional_text(host) or ""))
    return found
