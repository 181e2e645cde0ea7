"""Redis memory is bounded: by each session's stream, by maxmemory (noeviction), and by ingest, which stops
taking audio above WSP_REDIS_MEMORY_HIGH so that captions still fit (real Redis, ingest under uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.redis_conn import EmbeddedRedis
from common.settings import Settings, parse_bytes
from ingest.app import create_app
from tests.served import Served
from tests.waiting import wait_until

API_KEY = "memory-test-key-0123456789ab"
KEYED = {"Authorization": f"Bearer {API_KEY}"}
TWO_SECONDS = float_to_pcm16(np.random.default_rng(1).uniform(-0.5, 0.5, 2 * SAMPLE_RATE).astype(np.float32))


@pytest.fixture
def small_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(maxmemory="32mb")
    try:
        yield server
    finally:
        server.close()


def serve(server: EmbeddedRedis, **values: Any) -> Served:
    settings = Settings(redis_url=server.url, api_key=API_KEY, **values)
    return Served(lambda client: create_app(settings, client), server.url)


def new_session(served: Served) -> dict[str, Any]:
    response = httpx.post(f"{served.base}/v1/sessions", json={}, headers=KEYED)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def push_until_refused(url: str, pause_s: float, most_frames: int) -> dict[str, Any] | None:
    """Two-second frames with a pause between them; the refusal, or None if every frame was taken."""
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "start"}))
        await ws.recv()

        async def refusal() -> dict[str, Any] | None:
            async for raw in ws:
                message: dict[str, Any] = json.loads(raw)
                if message["type"] == "error":
                    await ws.wait_closed()
                    return {**message, "close": ws.close_code}
            return None

        reader = asyncio.create_task(refusal())
        try:
            for _ in range(most_frames):
                if reader.done():
                    break
                await ws.send(TWO_SECONDS)
                await asyncio.sleep(pause_s)
        except ConnectionClosed:
            pass
        if not reader.done():
            await ws.send(json.dumps({"type": "end"}))
        return await reader


def metric(served: Served, name: str) -> float:
    text = httpx.get(f"{served.base}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_ingest_stops_taking_audio_before_redis_is_full_and_captions_still_fit(
    small_redis: EmbeddedRedis,
) -> None:
    served = serve(small_redis, redis_memory_high=0.25, audio_max_speed=0, audio_stream_max_s=3600)
    db = redis.Redis.from_url(small_redis.url)
    try:
        sessions = [new_session(served) for _ in range(3)]

        async def flood() -> list[dict[str, Any] | None]:
            return await asyncio.gather(*(push_until_refused(s["audio_url"], 0.05, 400) for s in sessions))

        refusals = asyncio.run(flood())
        assert all(r is not None and r["code"] == "storage_full" and r["close"] == 1013 for r in refusals)
        used, limit = int(db.info("memory")["used_memory"]), parse_bytes("32mb")
        assert used < limit  # the alarm came before the limit
        assert metric(served, "wsp_ingest_redis_memory_high") == 1
        refused = httpx.post(f"{served.base}/v1/sessions", json={}, headers=KEYED)
        assert (refused.status_code, refused.json()["code"]) == (503, "storage_full")
        event = json.dumps({"v": 1, "type": "final", "track": "ja", "text": "x" * 200, "emitted_at": 1.0})
        for _ in range(100):  # the room left is the captions'
            db.xadd(keys.captions(sessions[0]["id"]), {"event": event})
        for session in sessions:  # the sessions end; their audio goes
            db.delete(keys.audio(session["id"]))
        wait_until(
            lambda: metric(served, "wsp_ingest_redis_memory_high") == 0, 10, "ingest to take audio again"
        )
        assert httpx.post(f"{served.base}/v1/sessions", json={}, headers=KEYED).status_code == 201
    finally:
        db.close()
        served.stop()


def test_a_session_stream_holds_at_most_its_bound_however_fast_it_is_fed(small_redis: EmbeddedRedis) -> None:
    served = serve(small_redis, audio_max_speed=0, audio_stream_max_s=31)
    db = redis.Redis.from_url(small_redis.url)
    try:
        session = new_session(served)
        assert asyncio.run(push_until_refused(session["audio_url"], 0.0, 60)) is None  # 120 s, all taken
        state = httpx.get(f"{served.base}/v1/sessions/{session['id']}", headers=KEYED).json()
        assert state["samples"] == 120 * SAMPLE_RATE
        kept_s = (db.xlen(keys.audio(session["id"])) - 1) * 2  # two-second frames, then the end entry
        assert 31 <= kept_s <= 31 + 2 * 2  # the bound, rounded up to whole frames
    finally:
        db.close()
        served.stop()
