"""Redis outages: a frozen server (SIGSTOP for 3 s) and a restarted one (same port, append-only file).

A worker and the publisher run in this process (the publisher under uvicorn in a thread), ingest too for
its own test; Redis is a real server of this test's own, since it is stopped and restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asr_worker.service.worker import Worker
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from common.settings import Settings
from ingest.app import create_app as create_ingest
from publisher.app import create_app as create_publisher
from tests.integration.restartable import RestartableRedis, serve_in_thread
from tests.waiting import async_wait_until
from tests.worker_helpers import stop_worker

TEXT = (
    "Good evening everyone. Welcome to the autumn concert. Please switch off your phones. "
    "Photography is not allowed during the performance. The first half is Mozart. "
)
CHUNK_S = 0.25
API_KEY = "resilience-test-key-0123456789abcdef"


async def with_retry(call: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """What a client does while Redis is away: try again until it answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def write_audio(redis: Redis, sid: str, seconds: float, speed: float) -> None:
    """Append audio as ingest does, at ``speed`` times real time, riding out outages without duplicates."""
    step = int(CHUNK_S * SAMPLE_RATE)
    chunk = float_to_pcm16(np.zeros(step, dtype=np.float32))
    sample0 = 0
    started = time.time()

    async def append() -> None:
        accepted = int(await redis.hget(keys.session(sid), "samples") or 0)
        if accepted > sample0:
            return  # the write went through before the connection failed
        async with redis.pipeline(transaction=True) as pipe:
            fields = {"kind": "audio", "sample0": sample0, "pcm": chunk, "at": repr(time.time())}
            pipe.xadd(keys.audio(sid), fields)  # type: ignore[arg-type]
            pipe.hincrby(keys.session(sid), "samples", step)
            await pipe.execute()

    while sample0 < seconds * SAMPLE_RATE:
        await with_retry(append)
        sample0 += step
        await asyncio.sleep(max(0.0, started + sample0 / SAMPLE_RATE / speed - time.time()))
    end = {"kind": "end", "sample0": sample0, "at": repr(time.time())}
    await with_retry(lambda: redis.xadd(keys.audio(sid), end))  # type: ignore[arg-type]


async def collect(url: str, received: list[CaptionEvent], connected: asyncio.Event) -> None:
    async with connect(url, open_timeout=10) as ws:
        connected.set()
        async for raw in ws:
            received.append(CaptionEvent.model_validate_json(raw))


def test_a_session_survives_a_frozen_and_a_restarted_redis(redis_server: RestartableRedis) -> None:
    """Captions of a session that lives through both outages: every word once, in order, seqs gap-free, at
    the caption stream and at a display that stays connected throughout."""
    timeline = ScriptedTranscriber.from_text(TEXT)
    url = redis_server.url
    settings = Settings(redis_url=url, worker_id="w-resilient", lease_ttl_s=1.0, api_key=API_KEY)
    publisher_at, stop_publisher = serve_in_thread(lambda r: create_publisher(settings, r), url)

    async def scenario() -> tuple[list[CaptionEvent], list[CaptionEvent]]:
        redis = Redis.from_url(url)
        sid = "outage"
        worker = Worker(settings, lambda _: ScriptedTranscriber(timeline, flip_last=True), vad=False)
        task = asyncio.create_task(worker.run())
        try:
            record = SessionRecord(
                id=sid, language="en", tracks=[TrackSpec(name="en")], created_at=time.time()
            )
            await redis.hset(
                keys.session(sid),
                mapping={"record": record.model_dump_json(), "status": "open", "samples": 0},
            )
            await redis.zadd(keys.sessions_active(), {sid: record.created_at})
            shown: list[CaptionEvent] = []
            connected = asyncio.Event()
            display = asyncio.create_task(
                collect(f"ws://{publisher_at}/v1/sessions/{sid}/captions?token={API_KEY}", shown, connected)
            )
            await asyncio.wait_for(connected.wait(), 10)
            writing = asyncio.create_task(write_audio(redis, sid, timeline[-1].end + 1.0, speed=2.0))
            await asyncio.sleep(3.0)
            await asyncio.to_thread(redis_server.freeze, 3.0)
            await asyncio.sleep(3.0)
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(redis_server.start)
            await writing

            async def ended() -> bool:
                return bool(await with_retry(lambda: redis.hget(keys.session(sid), "status")) == b"ended")

            await async_wait_until(ended, 60, "the session to end")
            await asyncio.wait_for(display, 30)
            rows: Any = await redis.xrange(keys.captions(sid))
            return [CaptionEvent.model_validate_json(f[b"event"]) for _, f in rows], shown
        finally:
            await stop_worker(worker, task, 60)
            await redis.aclose()

    try:
        events, shown = asyncio.run(scenario())
    finally:
        stop_publisher()
    words = " ".join(TEXT.split())
    for received in (events, shown):
        finals = [e for e in received if e.type == "final"]
        assert " ".join(e.text for e in finals) == words
        assert [e.seq for e in finals] == list(range(1, len(finals) + 1))
        assert received[-1].type == "end"


def test_ingest_refuses_audio_while_redis_is_down_and_takes_it_again_after(
    redis_server: RestartableRedis,
) -> None:
    settings = Settings(redis_url=redis_server.url)
    ingest_at, stop_ingest = serve_in_thread(lambda r: create_ingest(settings, r), redis_server.url)

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=f"http://{ingest_at}", timeout=30) as http:
            created = (await http.post("/v1/sessions", json={"language": "ja"})).json()
            audio_url = created["audio_url"]
            await asyncio.to_thread(redis_server.stop)
            async with connect(audio_url, open_timeout=10) as ws:
                await ws.send('{"type": "start"}')
                reply = await asyncio.wait_for(ws.recv(), 30)
                assert '"unavailable"' in str(reply)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert (await http.post("/v1/sessions", json={})).status_code == 503
            await asyncio.to_thread(redis_server.start)
            async with connect(audio_url, open_timeout=10) as ws:  # the same session goes on
                await ws.send('{"type": "start"}')
                assert '"ready"' in str(await asyncio.wait_for(ws.recv(), 30))
                await ws.send(float_to_pcm16(np.zeros(SAMPLE_RATE // 4, dtype=np.float32)))
                await ws.send('{"type": "end"}')
                while '"ended"' not in str(reply := await asyncio.wait_for(ws.recv(), 30)):
                    assert '"error"' not in str(reply), reply

    try:
        asyncio.run(scenario())
    finally:
        stop_ingest()
