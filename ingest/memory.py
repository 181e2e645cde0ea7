"""Redis memory, watched by ingest: the alarm before ``maxmemory`` is reached.

Redis runs with ``maxmemory`` and the ``noeviction`` policy: it never evicts a key (every other policy
may drop the captions of a live session, or a lease), and once full it refuses writes. Audio is the only
thing that grows fast, and ingest is where it comes in, so ingest watches ``used_memory`` and, above
``WSP_REDIS_MEMORY_HIGH`` of ``maxmemory``, takes no new session and no audio frame until memory is
back under the mark. The room left is the workers', for captions. The gauges are the alarm to page on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from common.redis_conn import memory_usage
from common.retry import reraise_if_cancelling
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often ingest reads the server's memory figures."""


class MemoryWatch:
    """Reads Redis's memory figures every :data:`POLL_S`; :attr:`high` above the mark."""

    def __init__(self, redis: Any, high_fraction: float, metrics: IngestMetrics) -> None:
        self._redis = redis
        self._fraction = high_fraction
        self._metrics = metrics
        self.high = False
        self.used = 0
        self.limit = 0

    def describe(self) -> str:
        """A sentence for a refused client."""
        return (
            f"the caption store is nearly full ({self.used / 2**20:.0f} of {self.limit / 2**20:.0f} MiB): "
            "no new audio is taken until memory is free again; try again in a minute"
        )

    async def check(self) -> None:
        """Read the figures once and update :attr:`high` and the gauges."""
        used, limit = await memory_usage(self._redis)
        high = bool(limit) and used >= self._fraction * limit
        if high != self.high:
            level = logging.WARNING if high else logging.INFO
            state = "above" if high else "back under"
            log.log(level, "redis memory %s the mark: %d of %d bytes used", state, used, limit)
        self.used, self.limit, self.high = used, limit, high
        self._metrics.redis_used_memory.set(used)
        self._metrics.redis_maxmemory.set(limit)
        self._metrics.redis_memory_high.set(1 if high else 0)

    async def run(self) -> None:
        """Check until cancelled; an unreachable Redis leaves the last figures as they were."""
        while True:
            try:
                await self.check()
            except (RedisError, OSError) as exc:
                reraise_if_cancelling()
                log.debug("redis memory figures unavailable: %s", exc)
            await asyncio.sleep(POLL_S)
