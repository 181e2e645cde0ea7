"""Admission that one client cannot exhaust (real Redis, ingest under uvicorn): sessions created per client
address and minute, sessions open per address, pages of other sites, and audio no faster than its pace.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.redis_conn import EmbeddedRedis
from common.settings import Settings
from ingest.app import create_app
from tests.served import Served

API_KEY = "admission-test-key-0123456789"
QUARTER = float_to_pcm16(np.zeros(SAMPLE_RATE // 4, dtype=np.float32))


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


def create(served: Served, **headers: str) -> httpx.Response:
    return httpx.post(f"{served.base}/v1/sessions", json={}, headers=headers, timeout=10)


def test_one_address_creates_a_few_sessions_a_minute(ingest: Callable[..., Served]) -> None:
    served = ingest(client_sessions_per_minute=3, max_sessions_per_client=100)
    assert [create(served).status_code for _ in range(3)] == [201, 201, 201]
    refused = create(served)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 20


def test_one_address_holds_a_bounded_number_of_open_sessions(
    ingest: Callable[..., Served], own_redis: EmbeddedRedis
) -> None:
    served = ingest(client_sessions_per_minute=100, max_sessions_per_client=2)
    first = create(served)
    assert create(served).status_code == 201
    refused = create(served)
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_sessions"
    with redis.Redis.from_url(own_redis.url) as db:
        db.zrem(keys.sessions_active(), first.json()["id"])  # what a worker does when a session ends
    assert create(served).status_code == 201


def test_the_api_key_is_held_to_neither_bound(ingest: Callable[..., Served]) -> None:
    served = ingest(api_key=API_KEY, client_sessions_per_minute=1, max_sessions_per_client=1)
    keyed = {"Authorization": f"Bearer {API_KEY}"}
    assert [create(served, **keyed).status_code for _ in range(4)] == [201] * 4


def test_a_page_of_another_site_cannot_create_sessions(ingest: Callable[..., Served]) -> None:
    served = ingest()
    simple = {"Content-Type": "text/plain"}  # a "simple" request: the browser sends it without asking
    refused = create(served, Origin="https://evil.example", **simple)
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    own = f"http://127.0.0.1:{served.port}"
    assert create(served, Origin=own, **simple).status_code == 201  # the microphone page itself


def test_an_allowed_origin_may_create_sessions_with_cors(ingest: Callable[..., Served]) -> None:
    served = ingest(allowed_origins="https://control.example")
    preflight = httpx.options(
        f"{served.base}/v1/sessions",
        headers={
            "Origin": "https://control.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://control.example"
    created = create(served, Origin="https://control.example")
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == "https://control.example"
    assert create(served, Origin="https://other.example").status_code == 403


# -- audio pace -----------------------------------------------------------------------------------
async def start(url: str, **fields: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url)
    await ws.send(json.dumps({"type": "start", **fields}))
    ready: dict[str, Any] = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws, ready


async def push(ws: ClientConnection, frames: int) -> tuple[dict[str, Any] | None, int | None]:
    """Send frames as fast as possible; the error message and close code if the service refuses."""
    try:
        for _ in range(frames):
            await ws.send(QUARTER)
        await ws.send(json.dumps({"type": "end"}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "error":
                await ws.wait_closed()
                return message, ws.close_code
            if message["type"] == "ended":
                await ws.close()
                return None, None
    except ConnectionClosed as closed:
        return None, closed.rcvd.code if closed.rcvd else None


def samples(served: Served, sid: str, token: str) -> int:
    state = httpx.get(f"{served.base}/v1/sessions/{sid}", params={"token": token}).json()
    return int(state["samples"])


def test_audio_faster_than_its_pace_is_refused_and_nothing_beyond_is_stored(
    ingest: Callable[..., Served],
) -> None:
    served = ingest(audio_max_speed=1.0, audio_burst_s=2.0)
    session = create(served).json()

    async def scenario() -> None:
        ws, ready = await start(session["audio_url"])
        began = time.monotonic()
        error, code = await push(ws, 40)  # 10 s of audio at once: 2 s of burst, then real time
        assert time.monotonic() - began < 5
        assert code == 4429 and error is not None and error["code"] == "too_fast"
        assert "real-time pace" in error["message"]
        stored = samples(served, session["id"], session["audio_token"])
        assert 2 * SAMPLE_RATE <= stored <= 3 * SAMPLE_RATE  # the burst and what the pace added meanwhile
        ws, ready = await start(session["audio_url"])  # the client goes on where the audio stands
        assert ready["samples"] == stored
        await asyncio.sleep(1.0)  # a second later a second more may be sent
        for _ in range(4):
            await ws.send(QUARTER)
        await ws.send(json.dumps({"type": "end"}))
        while (reply := json.loads(await ws.recv()))["type"] != "ended":
            assert reply["type"] == "ack", reply
        assert reply["samples"] == stored + SAMPLE_RATE
        await ws.close()

    asyncio.run(scenario())


def test_a_reconnecting_client_may_send_its_backlog_at_once(ingest: Callable[..., Served]) -> None:
    served = ingest(audio_max_speed=1.0, audio_burst_s=4.0)
    session = create(served).json()

    async def scenario() -> None:
        ws, _ = await start(session["audio_url"])
        for _ in range(8):  # two seconds, then the connection drops for two seconds
            await ws.send(QUARTER)
        while json.loads(await ws.recv())["samples"] < 2 * SAMPLE_RATE:  # acknowledged
            pass
        await ws.close()
        await asyncio.sleep(2.0)
        ws, ready = await start(session["audio_url"])
        assert ready["samples"] == 2 * SAMPLE_RATE
        error, code = await push(ws, 12)  # the two seconds missed plus one: within the burst
        assert (error, code) == (None, None)

    asyncio.run(scenario())


def test_tiny_frames_count_as_twenty_milliseconds(ingest: Callable[..., Served]) -> None:
    served = ingest(audio_max_speed=1.0, audio_burst_s=1.0)
    session = create(served).json()

    async def scenario() -> None:
        ws, _ = await start(session["audio_url"])
        sent = 0
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):  # 200 frames of one sample: 200 x 20 ms of the pace, not 12 ms
                await ws.send(b"\x00\x00")
                sent += 1
            await asyncio.wait_for(ws.recv(), 10)
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        assert samples(served, session["id"], session["audio_token"]) < 100

    asyncio.run(scenario())


def test_fast_pace_is_granted_with_the_key_or_where_the_deployment_accepts_it(
    ingest: Callable[..., Served],
) -> None:
    strict = ingest(api_key=API_KEY, audio_max_speed=1.0, audio_burst_s=1.0)
    lenient = ingest(api_key=API_KEY, audio_max_speed=1.0, audio_burst_s=1.0, accept_fast_audio=True)
    keyed = {"Authorization": f"Bearer {API_KEY}"}

    async def scenario() -> None:
        a, b, c = (create(s, **keyed).json() for s in (strict, strict, lenient))
        ws, ready = await start(a["audio_url"], pace="fast")  # with the audio token: not granted
        assert ready["pace"] == "realtime"
        assert (await push(ws, 20))[1] == 4429
        key_url = a["audio_url"].split("?")[0] + "?token=" + API_KEY
        ws, ready = await start(key_url.replace(a["id"], b["id"]), pace="fast")  # the key: granted
        assert ready["pace"] == "fast"
        assert await push(ws, 40) == (None, None)
        ws, ready = await start(c["audio_url"], pace="fast")  # WSP_ACCEPT_FAST_AUDIO
        assert ready["pace"] == "fast"
        assert await push(ws, 40) == (None, None)
        ws, ready = await start(
            c["audio_url"].replace(c["id"], a["id"]).split("?")[0] + f"?token={a['audio_token']}"
        )
        assert "pace" not in ready  # a start that does not ask gets the answer it always got
        await ws.close()

    asyncio.run(scenario())
