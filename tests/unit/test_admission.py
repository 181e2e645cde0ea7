"""Admission that one client cannot exhaust (real Redis, ingest under uvicorn): sessions created per client
address and minute, sessions open per address, pages of other sites, and audio no faster than its pace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from common.redis_conn import EmbeddedRedis
from common.settings import Settings
from ingest.admission import RateLimiter, origin_refusal
from ingest.app import create_app
from tests.served import Served


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A server of the test's own: the counts of the client address 127.0.0.1 start at 0."""
    server = EmbeddedRedis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def ingest(own_redis: EmbeddedRedis) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**values: Any) -> Served:
        settings = Settings(redis_url=own_redis.url, **values)
        served = Served(lambda client: create_app(settings, client), own_redis.url)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


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


# -- audio pace -----------------------------------------------------------------------------------
async def start(url: str, **fields: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url)
    await ws.send(json.dumps({"type": "start", **fields}))
    ready: dict[str, Any] = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws, ready
