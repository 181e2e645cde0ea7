"""Who runs which session: a worker's claims, and the decisions behind them.

A worker owns a session through a lease with a fencing epoch (:mod:`common.contract.leases`: a worker
that lost its lease can never write again) and advertises its free room. Only a session with audio no
worker has seen takes a place (:attr:`~common.contract.sessions.Activity.wants_worker`): one created and
not yet streamed, or given back while its audio paused, waits without one. A session goes to the worker
with the most room (:func:`claim_quota`); one that has waited too long goes to any worker with room.
A session nobody runs whose audio has not moved for too long is ended (:func:`idle_limit_s`).
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

from common.contract import audio, leases, sessions
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


def idle_limit_s(activity: sessions.Activity, idle_s: float, start_s: float) -> float | None:
    """How long a session nobody runs may go without audio before it is ended; None: no limit.

    A session that never streamed gets ``start_s`` (a test, a page reloaded: minutes), or ``idle_s`` if
    that is shorter; one that streamed gets ``idle_s`` (hours: an intermission). 0 turns either off.
    """
    limits = [idle_s] if activity.newest is not None else [start_s, idle_s]
    found = [limit for limit in limits if limit > 0]
    return min(found) if found else None


def claim_order(wanting: Sequence[Candidate], live_s: float) -> tuple[list[Candidate], list[Candidate]]:
    """Sessions that want a worker, split into live ones (audio arrived within ``live_s``: someone is
    speaking now) and stale ones (their audio stopped while they waited), each oldest first.

    Live sessions are claimed first, and only they make a full worker give back a silent session: a
    session abandoned with a little unheard audio must not keep a speaker waiting. ``live_s`` 0: all live.
    """
    if not live_s:
        return list(wanting), []
    live = [c for c in wanting if c.activity.idle_s(c.created_at) < live_s]
    return live, [c for c in wanting if c not in live]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An active session no worker holds, with where its audio stands."""

    created_at: float
    activity: sessions.Activity

    @property
    def sid(self) -> str:
        return self.activity.sid


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

    async def unowned_sessions(self, mine: Iterable[str]) -> list[Candidate]:
        """Active sessions with no live lease, oldest first, with where their audio stands."""
        active = await sessions.active(self.redis)
        if not active:
            return []
        held = await leases.leased(self.redis, [sid for sid, _ in active])
        free = set(unowned([sid for sid, _ in active], held, mine))
        waiting = [(sid, created) for sid, created in active if sid in free]
        found = await sessions.activities(self.redis, [sid for sid, _ in waiting])
        return [
            Candidate(created, activity)
            for (_, created), activity in zip(waiting, found, strict=True)
            if activity is not None
        ]

    async def end_idle(self, candidate: Candidate) -> bool:
        """End the audio of a session nobody runs, unless audio came since ``candidate`` was read."""
        seen = candidate.activity.newest or audio.NONE_SEEN
        verdict = await sessions.end_unheld_audio(self.redis, candidate.sid, sessions.IDLE, seen, time.time())
        return verdict is sessions.AudioVerdict.OK

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
