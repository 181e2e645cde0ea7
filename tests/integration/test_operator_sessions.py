"""The operator's view of a deployment (API key): every open session and what it is doing, and ending any
of them (real Redis, ingest under uvicorn)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import audio, keys, leases
from common.redis_conn import EmbeddedRedis
from common.settings import Settings
from ingest.app import create_app
from tests.served import Served

API_KEY = "operator-test-key-0123456789"
KEYED = {"Authorization": f"Bearer {API_KEY}"}
QUARTER = float_to_pcm16(np.zeros(SAMPLE_RATE // 4, dtype=np.float32))


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis()
    try:
        yield embedded
    finally:
        embedded.close()


@pytest.fixture
def ingest(server: EmbeddedRedis) -> Iterator[Served]:
    settings = Settings(redis_url=server.url, api_key=API_KEY)
    served = Served(lambda client: create_app(settings, client), server.url)
    yield served
    served.stop()


def listed(ingest: Served) -> dict[str, dict[str, object]]:
    response = httpx.get(f"{ingest.base}/v1/sessions", headers=KEYED)
    assert response.status_code == 200, response.text
    return {s["id"]: s for s in response.json()["sessions"]}


def test_the_operator_lists_open_sessions_with_what_each_is_doing(
    ingest: Served, server: EmbeddedRedis
) -> None:
    created = [
        httpx.post(f"{ingest.base}/v1/sessions", json={"title": f"room {n}"}, headers=KEYED).json()
        for n in range(3)
    ]
    waiting, queued, running = (c["id"] for c in created)

    async def send_a_second(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "start"}))
            await ws.recv()
            for _ in range(4):
                await ws.send(QUARTER)
            while json.loads(await ws.recv())["samples"] < SAMPLE_RATE:
                pass

    asyncio.run(send_a_second(created[1]["audio_url"]))
    asyncio.run(send_a_second(created[2]["audio_url"]))

    async def hold(sid: str) -> None:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            assert await leases.claim(client, sid, "worker-a", 30_000) is not None
        finally:
            await client.aclose()

    asyncio.run(hold(running))
    sessions = listed(ingest)
    assert {sid: s["activity"] for sid, s in sessions.items()} == {
        waiting: "waiting",
        queued: "queued",
        running: "running",
    }
    assert sessions[running]["worker"] == "worker-a"
    assert sessions[queued]["samples"] == SAMPLE_RATE and sessions[queued]["title"] == "room 1"
    assert "audio_token" not in json.dumps(sessions)


def test_only_the_key_lists_sessions(ingest: Served, server: EmbeddedRedis) -> None:
    session = httpx.post(f"{ingest.base}/v1/sessions", json={}, headers=KEYED).json()
    for headers in ({}, {"Authorization": f"Bearer {session['audio_token']}"}):
        refused = httpx.get(f"{ingest.base}/v1/sessions", headers=headers)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    settings = Settings(redis_url=server.url)  # a deployment without a key: nobody lists
    keyless = Served(lambda client: create_app(settings, client), server.url)
    try:
        refused = httpx.get(f"{keyless.base}/v1/sessions")
        assert refused.status_code == 401 and "WSP_API_KEY" in refused.json()["message"]
    finally:
        keyless.stop()


def test_the_operator_ends_a_session_while_it_streams(ingest: Served, server: EmbeddedRedis) -> None:
    session = httpx.post(f"{ingest.base}/v1/sessions", json={}, headers=KEYED).json()
    end_url = f"{ingest.base}/v1/sessions/{session['id']}/end"

    async def scenario() -> int | None:
        async with connect(session["audio_url"]) as ws:
            await ws.send(json.dumps({"type": "start"}))
            await ws.recv()
            await ws.send(QUARTER)
            refused = httpx.post(end_url, params={"token": session["read_token"]})  # a display may not
            assert refused.status_code == 401
            from_elsewhere = httpx.post(end_url, headers={**KEYED, "Origin": "https://evil.example"})
            assert from_elsewhere.status_code == 403
            ended = httpx.post(end_url, headers=KEYED)
            assert ended.status_code == 200 and ended.json()["audio_ended"] is True
            assert httpx.post(end_url, headers=KEYED).status_code == 200  # twice is the same
            try:
                for _ in range(20):
                    await ws.send(QUARTER)
                    await asyncio.sleep(0.05)
                while True:
                    await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    assert asyncio.run(scenario()) == 4409  # the sender is told the session took no more audio
    with redis.Redis.from_url(server.url) as db:
        _, fields = db.xrevrange(keys.audio(session["id"]), count=1)[0]
        assert fields[audio.KIND.encode()] == b"end" and fields[audio.REASON.encode()] == b"operator"
    missing = httpx.post(f"{ingest.base}/v1/sessions/nosuchsession/end", headers=KEYED)
    assert missing.status_code == 404


def test_a_sender_may_end_its_own_session_with_its_audio_token(ingest: Served) -> None:
    session = httpx.post(f"{ingest.base}/v1/sessions", json={}, headers=KEYED).json()
    ended = httpx.post(
        f"{ingest.base}/v1/sessions/{session['id']}/end", params={"token": session["audio_token"]}
    )
    assert ended.status_code == 200 and ended.json()["audio_ended"] is True
