"""Slow displays are dropped by the rule the publisher documents, and counted: a display that reads nothing
answers no keepalive ping and is closed with 4408 after WSP_DISPLAY_TIMEOUT_S (not left to a transport
timeout), while the others go on; a session has at most WSP_MAX_DISPLAYS_PER_SESSION displays per
publisher process, the next one refused with a clear 4429 (real Redis, the publisher under uvicorn)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from common import auth
from common.contract import captions, keys, sessions
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from common.settings import Settings
from publisher.app import create_app
from publisher.server import display_socket_options
from tests.served import Served
from tests.waiting import wait_until

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def publisher(redis_url: str) -> Iterator[Served]:
    settings = Settings(redis_url=redis_url, display_timeout_s=TIMEOUT_S, max_displays_per_session=3)
    served = Served(
        lambda client: create_app(settings, client), redis_url, **display_socket_options(settings)
    )
    yield served
    served.stop()


@pytest.fixture
def connections() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def new_session(redis_url: str, sid: str) -> str:
    """A session as ingest stores it (through the contract); its read token."""
    tokens = auth.issue()
    record = SessionRecord(id=sid, language="en", tracks=[TrackSpec(name="en")], created_at=time.time())

    async def create() -> None:
        client = AsyncRedis.from_url(redis_url)
        try:
            await client.delete(keys.session(sid))
            await sessions.create(client, record, tokens.hashes())
        finally:
            await client.aclose()

    asyncio.run(create())
    return tokens.read


def url(served: Served, sid: str, token: str) -> str:
    return served.base.replace("http://", "ws://") + f"/v1/sessions/{sid}/captions?token={token}"


def partial(n: int) -> str:
    return captions.encode(
        CaptionEvent(type="partial", track="en", text=f"words {n}", emitted_at=time.time())
    )


def dropped(served: Served) -> float:
    text = httpx.get(f"{served.base}/metrics").text
    found = re.search(r"^wsp_publisher_displays_dropped_total (\S+)$", text, re.MULTILINE)
    assert found
    return float(found.group(1))


def displays(served: Served, sid: str) -> int:
    count: int = served.app.state.hub.displays(sid)
    return count


def wait_displays(served: Served, sid: str, count: int) -> None:
    wait_until(lambda: displays(served, sid) == count, 10, f"{count} displays")


def test_a_display_that_reads_nothing_is_dropped_as_too_slow_and_counted(
    publisher: Served, db: redis.Redis, connections: ExitStack, redis_url: str
) -> None:
    sid = "slow-never-reads"
    token = new_session(redis_url, sid)
    before = dropped(publisher)
    stalled: ClientConnection = connections.enter_context(connect(url(publisher, sid, token), max_queue=1))
    reader: ClientConnection = connections.enter_context(connect(url(publisher, sid, token)))
    wait_displays(publisher, sid, 2)
    began = time.monotonic()
    got: list[Any] = []
    n = 0
    while displays(publisher, sid) == 2:  # a few small events a second, as a talk makes them
        assert time.monotonic() - began < 4 * TIMEOUT_S + 2, "the stalled display was never dropped"
        db.publish(keys.live(sid), partial(n))
        n += 1
        got.append(reader.recv(timeout=5))
        time.sleep(0.1)
    assert dropped(publisher) == before + 1
    db.publish(keys.live(sid), partial(n))
    got.append(reader.recv(timeout=5))  # the others go on
    assert len(got) == n + 1
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            stalled.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


def test_a_display_that_reads_keeps_its_place(
    publisher: Served, db: redis.Redis, connections: ExitStack, redis_url: str
) -> None:
    sid = "slow-reads-fine"
    token = new_session(redis_url, sid)
    reader: ClientConnection = connections.enter_context(connect(url(publisher, sid, token)))
    wait_displays(publisher, sid, 1)
    deadline = time.monotonic() + 4 * TIMEOUT_S  # several ping timeouts pass
    n = 0
    while time.monotonic() < deadline:
        db.publish(keys.live(sid), partial(n))
        n += 1
        reader.recv(timeout=5)
        time.sleep(0.2)
    assert displays(publisher, sid) == 1


def test_a_session_has_a_bounded_number_of_displays(
    publisher: Served, db: redis.Redis, connections: ExitStack, redis_url: str
) -> None:
    sid = "slow-display-cap"
    token = new_session(redis_url, sid)
    first = connect(url(publisher, sid, token))
    for _ in range(2):
        connections.enter_context(connect(url(publisher, sid, token)))
    connections.enter_context(first)
    wait_displays(publisher, sid, 3)
    refused = connections.enter_context(connect(url(publisher, sid, token)))
    with pytest.raises(ConnectionClosed) as closed:
        message = refused.recv(timeout=10)
        assert '"too_many_displays"' in str(message) and "WSP_MAX_DISPLAYS_PER_SESSION" in str(message)
        refused.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    first.close()
    wait_displays(publisher, sid, 2)
    connections.enter_context(connect(url(publisher, sid, token)))  # a place came free
    wait_displays(publisher, sid, 3)
