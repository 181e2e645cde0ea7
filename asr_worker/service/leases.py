"""Who runs which session: a worker's claims, and the decisions behind them.

A worker owns a session through a lease with a fencing epoch (:mod:`common.contract.leases`: a worker
that lost its lease can never write again) and advertises its free room. A new session goes to the worker
with the most room (:func:`claim_quota`); one that has waited too long goes to any worker with room.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from common.contract import leases, sessions
from common.contract.leases import Lease

log = logging.getLogger(__name__)

STALE_WORKER_TTLS = 10
"""A worker silent for this many lease TTLs is removed from the worker set by whoever notices."""


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


# -- Redis adapter ------------------------------------------------------------------------------
class Leases:
    """Claims, renews and releases session leases for one worker, and advertises its room."""

    def __init__(self, redis: Redis, worker_id: str, ttl_s: float) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.ttl_ms = max(1, round(ttl_s * 1000))

    async def claim(self, sid: str) -> Lease | None:
        """Take the session if no one holds it; the lease carries the new epoch."""
        return await leases.claim(self.redis, sid, self.worker_id, self.ttl_ms)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it is no longer ours (the session must be dropped)."""
        return await leases.renew(self.redis, lease, self.ttl_ms)

    async def release(self, lease: Lease) -> bool:
        """Give the session back at once, so another worker may take it over without waiting."""
        return await leases.release(self.redis, lease)

    async def unowned_sessions(self, mine: Iterable[str]) -> list[tuple[str, float]]:
        """(sid, created unix time) of active sessions with no live lease, oldest first."""
        active = await sessions.active(self.redis)
        if not active:
            return []
        held = await leases.leased(self.redis, [sid for sid, _ in active])
        free = set(unowned([sid for sid, _ in active], held, mine))
        return [(sid, created) for sid, created in active if sid in free]

    async def advertise(self, capacity: int, owned: int) -> None:
        """Heartbeat of the worker itself: its room and its last-seen time."""
        now = time.time()
        forget_before = now - STALE_WORKER_TTLS * self.ttl_ms / 1000
        await leases.advertise(
            self.redis, self.worker_id, capacity, owned, socket.gethostname(), self.ttl_ms, now, forget_before
        )

    async def withdraw(self) -> None:
        """Stop advertising (graceful stop)."""
        await leases.withdraw(self.redis, self.worker_id)

    async def other_rooms(self) -> list[Room]:
        """The room of every other worker seen within one lease TTL."""
        seen = await leases.seen_since(self.redis, time.time() - self.ttl_ms / 1000)
        others = await leases.advertisements(self.redis, [w for w in seen if w != self.worker_id])
        return [Room(ad.worker_id, ad.capacity, ad.owned) for ad in others]
