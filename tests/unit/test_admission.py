"""Admission that one client cannot exhaust: sessions created per client address and minute, sessions open
per address (counted in Redis: fakeredis here, the real server in the integration tier), pages of other sites.
"""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from common.contract import clients, keys, leases, sessions
from common.schemas import SessionRecord, TrackSpec
from common.settings import Settings
from ingest.admission import RateLimiter, origin_refusal
from ingest.store import ClientQuota, SessionStore, TooManyForClient


# -- per client address ---------------------------------------------------------------------------
def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(20.0)  # the next one in 60 s / 3
    assert limiter.take("b") == 0.0  # another address has its own
    now[0] = 20.0
    assert limiter.take("a") == 0.0


# -- other sites ----------------------------------------------------------------------------------
def test_origins_are_judged_by_host_and_port() -> None:
    own = {"host": "venue.example:8000"}
    assert origin_refusal(own, []) is None  # not a browser
    assert origin_refusal({**own, "origin": "http://venue.example:8000"}, []) is None
    assert origin_refusal({**own, "origin": "https://venue.example:8000"}, []) is None  # behind https
    assert origin_refusal({**own, "origin": "https://evil.example"}, []) is not None
    assert origin_refusal({**own, "origin": "null"}, []) is not None  # a sandboxed frame, a file
    assert origin_refusal({**own, "origin": "https://control.example"}, ["https://control.example"]) is None


# -- sessions open per client address (fakeredis: Redis semantics without a server) ---------------
def test_the_eleventh_open_session_of_one_address_is_refused_until_one_has_ended() -> None:
    most = Settings.model_fields["max_sessions_per_client"].default
    keep_ms = 60_000

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        store = SessionStore(redis)
        venue = ClientQuota(clients.client_id("203.0.113.7"), most, keep_ms)

        async def open_one(sid: str, client: ClientQuota) -> None:
            record = SessionRecord(
                id=sid, language="en", tracks=[TrackSpec(name="en")], created_at=time.time()
            )
            await store.create(record, client=client)

        for n in range(most):
            await open_one(f"s-venue-{n}", venue)
        with pytest.raises(TooManyForClient, match=f"already has {most} sessions open"):
            await open_one("s-venue-extra", venue)
        assert await redis.exists(keys.session("s-venue-extra")) == 0  # nothing of it is kept
        await open_one("s-neighbour", ClientQuota(clients.client_id("198.51.100.2"), most, keep_ms))

        lease = await leases.claim(redis, "s-venue-0", "w-1", 10_000)  # a worker ends one of them
        assert lease is not None
        await sessions.close(redis, lease, ["en"], retention_ms=1_000)
        await open_one("s-venue-again", venue)
        assert 0 < await redis.pttl(keys.client_sessions(venue.id)) <= keep_ms  # forgotten in time
        await redis.aclose()

    asyncio.run(scenario())
