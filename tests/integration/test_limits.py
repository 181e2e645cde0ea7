"""Ingest limits against a real Redis: sessions open at once (WSP_MAX_SESSIONS) and session length
(WSP_MAX_SESSION_S)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.settings import Settings
from ingest.app import create_app
from tests.integration.restartable import RestartableRedis, serve_in_thread

QUARTER = float_to_pcm16(np.zeros(SAMPLE_RATE // 4, dtype=np.float32))


def test_sessions_beyond_the_limit_are_refused_until_one_ends(redis_server: RestartableRedis) -> None:
    settings = Settings(redis_url=redis_server.url, max_sessions=2)
    at, stop = serve_in_thread(lambda r: create_app(settings, r), redis_server.url)

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=f"http://{at}", timeout=10) as http:
            first = await http.post("/v1/sessions", json={})
            assert first.status_code == 201
            assert (await http.post("/v1/sessions", json={})).status_code == 201
            refused = await http.post("/v1/sessions", json={})
            assert refused.status_code == 503
            body = refused.json()
            assert body["code"] == "at_capacity" and "2 sessions are open" in body["message"]
            redis = Redis.from_url(redis_server.url)
            try:
                assert await redis.zcard(keys.sessions_active()) == 2  # the refused one left nothing behind
                await redis.zrem(keys.sessions_active(), first.json()["id"])  # what a worker does at the end
            finally:
                await redis.aclose()
            assert (await http.post("/v1/sessions", json={})).status_code == 201

    try:
        asyncio.run(scenario())
    finally:
        stop()


def test_audio_beyond_the_longest_session_is_refused_and_the_session_can_still_end(
    redis_server: RestartableRedis,
) -> None:
    settings = Settings(redis_url=redis_server.url, max_session_s=1.0)
    at, stop = serve_in_thread(lambda r: create_app(settings, r), redis_server.url)

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=f"http://{at}", timeout=10) as http:
            audio_url = (await http.post("/v1/sessions", json={})).json()["audio_url"]
        async with connect(audio_url) as ws:
            await ws.send(json.dumps({"type": "start"}))
            assert json.loads(await ws.recv())["type"] == "ready"
            for _ in range(4):  # exactly one second: accepted
                await ws.send(QUARTER)
            await ws.send(QUARTER)
            replies = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            errors = [r for r in replies if r["type"] == "error"]
            assert errors and errors[0]["code"] == "session_too_long"
            assert "end" in errors[0]["message"]
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4413
        async with connect(audio_url) as ws:  # the audio so far is kept, and the session can be ended
            await ws.send(json.dumps({"type": "start"}))
            assert json.loads(await ws.recv()) == {"type": "ready", "samples": SAMPLE_RATE}
            await ws.send(json.dumps({"type": "end"}))
            assert json.loads(await ws.recv()) == {"type": "ended", "samples": SAMPLE_RATE}

    try:
        asyncio.run(scenario())
    finally:
        stop()
