"""Sessions that never stream, or stop streaming, do not hold worker places (real Redis, in-process
workers on the scripted engine, audio written by ingest's own scripts).

A created session takes a place only once its audio arrives; one that never streams is ended after
WSP_SESSION_START_S; a full worker gives a silent session back when a live one waits; a real session's
first caption comes as soon with abandoned sessions present as without them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from redis.asyncio import Redis

from asr_worker.service.worker import Worker
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys, leases, sessions
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from common.settings import Settings
from ingest.store import SessionStore
from tests.worker_helpers import stop_worker

WORDS = "one two three four five six seven eight nine ten. eleven twelve thirteen fourteen fifteen."
CHUNK_S = 0.25
CHUNK = float_to_pcm16(np.zeros(int(CHUNK_S * SAMPLE_RATE), dtype=np.float32))
MAXLEN = 10_000
WRITER = "microphone"


# -- against a real Redis -------------------------------------------------------------------------
def settings(url: str, worker_id: str, **more: Any) -> Settings:
    values: dict[str, Any] = {"lease_ttl_s": 1.0, "worker_capacity": 2, **more}
    return Settings(redis_url=url, worker_id=worker_id, **values)


@asynccontextmanager
async def running(config: Settings) -> AsyncIterator[Worker]:
    timeline = ScriptedTranscriber.from_text(WORDS)
    worker = Worker(config, lambda _: ScriptedTranscriber(timeline), vad=False)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await stop_worker(worker, task)


async def create(redis: Redis, sid: str) -> SessionStore:
    store = SessionStore(redis)
    await redis.delete(*keys.session_keys(sid, ["en"]), keys.lease(sid))
    record = SessionRecord(id=sid, language="en", tracks=[TrackSpec(name="en")], created_at=time.time())
    await store.create(record)
    return store


async def stream(store: SessionStore, sid: str, seconds: float, pace: bool, start_at: int = 0) -> int:
    """Append ``seconds`` of audio the way ingest does (at real-time pace if ``pace``); the samples sent."""
    await store.start(sid, WRITER)
    sample = start_at
    began = time.monotonic()
    for n in range(round(seconds / CHUNK_S)):
        sample = await store.append(sid, WRITER, CHUNK, MAXLEN, sample) + len(CHUNK) // 2
        if pace:
            await asyncio.sleep(max(0.0, began + (n + 1) * CHUNK_S - time.monotonic()))
    return sample


async def finals(redis: Redis, sid: str) -> list[CaptionEvent]:
    rows: Any = await redis.xrange(keys.captions(sid))
    events = [CaptionEvent.model_validate_json(fields[b"event"]) for _, fields in rows]
    return [e for e in events if e.type == "final"]


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def first_caption_s(redis: Redis, sid: str, timeout_s: float = 15.0) -> float:
    """Stream a real session at real-time pace; seconds from its first audio to its first final."""
    store = await create(redis, sid)
    began = time.monotonic()
    sender = asyncio.create_task(stream(store, sid, 6.0, pace=True))
    try:
        if not await wait_until(lambda: _has_final(redis, sid), timeout_s):
            return float("inf")
        return time.monotonic() - began
    finally:
        sender.cancel()


async def _has_final(redis: Redis, sid: str) -> bool:
    return bool(await finals(redis, sid))


def test_a_created_session_takes_no_worker_place_until_its_audio_arrives(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        try:
            async with running(settings(redis_url, "w-wait", worker_capacity=1)) as worker:
                quiet = "idle-created"
                store = await create(redis, quiet)
                await store.start(quiet, WRITER)  # a page that said start and sent nothing
                speaker = "idle-created-speaker"  # created after it, and streaming
                await stream(await create(redis, speaker), speaker, 0.5, pace=False)
                assert await wait_until(lambda: _holder_is(redis, speaker, "w-wait"), 5.0)
                # the worker's only place went to the later session with audio: the silent one took none
                assert worker.owned == [speaker]
                assert await leases.holder(redis, quiet) is None
                assert await redis.zscore(keys.sessions_active(), quiet) is not None  # still open
                await store.end(speaker, WRITER)
                assert await wait_until(lambda: _owns(worker, 0), 10.0)
                await store.append(quiet, WRITER, CHUNK, MAXLEN, 0)
                assert await wait_until(lambda: _holder_is(redis, quiet, "w-wait"), 5.0)
        finally:
            await redis.aclose()

    asyncio.run(scenario())


async def _holder_is(redis: Redis, sid: str, worker_id: str) -> bool:
    return await leases.holder(redis, sid) == worker_id


def test_a_session_that_never_streams_is_ended_after_the_start_time(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        try:
            async with running(settings(redis_url, "w-start", session_start_s=1.0)):
                never = "idle-never-streams"
                await create(redis, never)
                began = time.monotonic()
                assert await wait_until(lambda: _ended(redis, never), 10.0)
                assert time.monotonic() - began < 5.0
                assert await redis.zscore(keys.sessions_active(), never) is None  # its place is free
                rows: Any = await redis.xrange(keys.captions(never))
                events = [CaptionEvent.model_validate_json(fields[b"event"]) for _, fields in rows]
                assert [e.type for e in events] == ["end"]  # its displays were told
                ended = await redis.hget(keys.session(never), sessions.ENDED_REASON)
                assert ended == sessions.IDLE.encode()
        finally:
            await redis.aclose()

    asyncio.run(scenario())


async def _ended(redis: Redis, sid: str) -> bool:
    return await redis.hget(keys.session(sid), "status") == b"ended"


def test_a_real_session_gets_its_first_caption_as_soon_with_abandoned_sessions_present(
    redis_url: str,
) -> None:
    """Capacity 2, six abandoned sessions: three never streamed, three streamed a second and went silent
    (two of them took the places, the third waits with unheard audio). A speaker starting now gets
    captions as soon as on an empty worker, and a silent session given back goes on once its audio does."""

    async def scenario() -> tuple[float, float]:
        redis = Redis.from_url(redis_url)
        try:
            async with running(settings(redis_url, "w-alone", session_park_s=1.0)):
                alone = await first_caption_s(redis, "idle-real-alone")
            async with running(settings(redis_url, "w-crowd", session_park_s=1.0)) as worker:
                for n in range(3):
                    await create(redis, f"idle-abandoned-never-{n}")
                silent = [f"idle-abandoned-silent-{n}" for n in range(3)]
                for sid in silent:
                    await stream(await create(redis, sid), sid, 1.0, pace=False)
                assert await wait_until(lambda: _owns(worker, 2), 5.0)
                await asyncio.sleep(1.5)  # silent for longer than WSP_SESSION_PARK_S
                crowded = await first_caption_s(redis, "idle-real-crowd")
                # a session given back goes on when its speaker does: nothing heard is lost
                parked = [sid for sid in silent if await redis.hget(keys.session(sid), sessions.PARKED)]
                assert parked, "no silent session was given back"
                back = parked[0]
                store = SessionStore(redis)
                await stream(store, back, 5.0, pace=False, start_at=SAMPLE_RATE)
                await store.end(back, WRITER)
                assert await wait_until(lambda: _ended(redis, back), 20.0)
                heard = " ".join(e.text for e in await finals(redis, back))
                assert heard == " ".join(WORDS.split()[:10])  # every word of its 6 s, once, in order
            return alone, crowded
        finally:
            await redis.aclose()

    alone, crowded = asyncio.run(scenario())
    assert alone < 5.0
    assert crowded < alone + 1.5, f"first caption after {crowded:.2f} s, {alone:.2f} s on an empty worker"


async def _owns(worker: Worker, count: int) -> bool:
    return len(worker.owned) == count
