"""Limits and back-pressure against a real Redis: the audio stream stays small, a slow worker skips ahead.

Workers run in this process with the scripted engine; the skip test also runs the publisher (uvicorn in a
thread) so that the skip is seen where a venue sees it, at a display.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import uvicorn
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from asr_worker.core.seam import Segment, TranscribeRequest
from asr_worker.service.worker import Worker
from asr_worker.transcribers.scripted import ScriptedTranscriber
from common.audio import SAMPLE_RATE, float_to_pcm16
from common.contract import keys
from common.schemas import CaptionEvent, SessionRecord, TrackSpec
from common.settings import Settings
from publisher.app import create_app
from tests.served import Served, free_port
from tests.waiting import async_wait_until
from tests.worker_helpers import captions, stop_worker

SENTENCES = (
    "Good evening everyone. Welcome to the autumn concert. Please switch off your phones. "
    "Photography is not allowed during the performance. The first half is Mozart. "
)
LONG_TEXT = SENTENCES * 5
"""About 130 words: 64 s of scripted speech."""
CHUNK_S = 0.25
API_KEY = "backpressure-test-key-0123456789abcdef"


def worker(url: str, worker_id: str, engine: Any = None, **overrides: Any) -> Worker:
    settings = Settings(redis_url=url, worker_id=worker_id, lease_ttl_s=1.0, worker_capacity=2, **overrides)
    timeline = ScriptedTranscriber.from_text(LONG_TEXT)
    return Worker(settings, engine or (lambda _: ScriptedTranscriber(timeline, flip_last=True)), vad=False)


async def create_session(redis: Redis, sid: str) -> None:
    record = SessionRecord(id=sid, language="en", tracks=[TrackSpec(name="en")], created_at=time.time())
    await redis.hset(
        keys.session(sid), mapping={"record": record.model_dump_json(), "status": "open", "samples": 0}
    )
    await redis.zadd(keys.sessions_active(), {sid: record.created_at})


@dataclass
class Writer:
    """Appends audio the way ingest does, at ``speed`` times real time; remembers when each sample came."""

    redis: Redis
    sid: str
    speed: float
    started: float = 0.0
    lengths: list[int] = field(default_factory=list)

    async def run(self, seconds: float) -> None:
        step = int(CHUNK_S * SAMPLE_RATE)
        chunk = float_to_pcm16(np.zeros(step, dtype=np.float32))
        self.started = time.time()
        sample0 = 0
        while sample0 < seconds * SAMPLE_RATE:
            fields = {"kind": "audio", "sample0": sample0, "pcm": chunk, "at": repr(time.time())}
            await self.redis.xadd(keys.audio(self.sid), fields)  # type: ignore[arg-type]
            await self.redis.hincrby(keys.session(self.sid), "samples", step)
            self.lengths.append(await self.redis.xlen(keys.audio(self.sid)))
            sample0 += step
            due = self.started + sample0 / SAMPLE_RATE / self.speed
            await asyncio.sleep(max(0.0, due - time.time()))
        await self.redis.xadd(
            keys.audio(self.sid), {"kind": "end", "sample0": sample0, "at": repr(time.time())}
        )


async def wait_ended(redis: Redis, sid: str, timeout_s: float) -> None:
    async def ended() -> bool:
        return bool(await redis.hget(keys.session(sid), "status") == b"ended")

    await async_wait_until(ended, timeout_s, f"session {sid} to end")


async def finals_at_least(redis: Redis, sid: str, count: int, timeout_s: float) -> None:
    async def enough() -> bool:
        return sum(e.type == "final" for e in await captions(redis, sid)) >= count

    await async_wait_until(enough, timeout_s, f"{count} finals of {sid}")


def test_the_audio_stream_stays_small_and_a_resumed_worker_finds_what_it_needs(redis_url: str) -> None:
    """64 s of audio (256 entries): the stream never holds much more than the processor's buffer; a worker
    that crashes halfway is replaced by one that resumes from the trimmed stream without loss; once the
    session has ended its audio is gone and the rest of its keys expire after the retention time."""

    async def scenario() -> tuple[list[CaptionEvent], list[int], dict[str, int], int]:
        redis = Redis.from_url(redis_url)
        sid = "bounded-audio"
        first = worker(redis_url, "w-trim-1", session_retention_s=600)
        second = worker(redis_url, "w-trim-2", session_retention_s=600)
        first_task = asyncio.create_task(first.run())
        second_task: asyncio.Task[None] | None = None
        try:
            await create_session(redis, sid)
            writer = Writer(redis, sid, speed=8.0)
            audio_s = ScriptedTranscriber.from_text(LONG_TEXT)[-1].end + 1.0
            writing = asyncio.create_task(writer.run(audio_s))
            await finals_at_least(redis, sid, 40, timeout_s=60)
            first_task.cancel()  # a crash: the lease expires, the second worker resumes from the checkpoint
            await asyncio.gather(first_task, return_exceptions=True)
            second_task = asyncio.create_task(second.run())
            await writing
            await wait_ended(redis, sid, timeout_s=60)
            ttls = {
                key: await redis.ttl(key) for key in keys.session_keys(sid, ["en"]) if await redis.exists(key)
            }
            return await captions(redis, sid), writer.lengths, ttls, await redis.xlen(keys.audio(sid))
        finally:
            if second_task is not None:
                second.stop()
                await asyncio.wait_for(second_task, 30)
            await redis.aclose()

    events, lengths, ttls, audio_left = asyncio.run(scenario())
    finals = [e for e in events if e.type == "final"]
    assert " ".join(e.text for e in finals) == " ".join(LONG_TEXT.split())
    assert [e.seq for e in finals] == list(range(1, len(finals) + 1))
    assert len(lengths) > 250  # 64 s of audio
    # the processor's buffer is at most 16 s (64 entries); the batch being read and the unread tail add a bit
    assert max(lengths) < 130, max(lengths)
    assert audio_left == 1  # only the end marker
    assert keys.captions(sid := "bounded-audio") in ttls and keys.session(sid) in ttls
    assert all(0 < ttl <= 600 for ttl in ttls.values()), ttls


@dataclass
class SlowScript:
    """A scripted engine that takes 1.5 s of compute per second of buffer: it cannot keep up."""

    engine: ScriptedTranscriber
    cost_per_s: float = 1.5

    def transcribe(self, request: TranscribeRequest) -> list[Segment]:
        time.sleep(self.cost_per_s * request.audio.size / SAMPLE_RATE)
        return self.engine.transcribe(request)


@dataclass
class Publisher:
    url: str
    server: uvicorn.Server


@pytest.fixture(scope="module")
def publisher(redis_url: str) -> Iterator[Publisher]:
    port = free_port()
    settings = Settings(redis_url=redis_url, publisher_port=port, api_key=API_KEY)
    served = Served(lambda client: create_app(settings, client), redis_url, port, lifespan="on")
    yield Publisher(f"ws://127.0.0.1:{port}", served.server)
    served.stop()


async def display(url: str, received: list[CaptionEvent], connected: asyncio.Event) -> None:
    async with connect(url, open_timeout=10) as ws:
        connected.set()
        async for raw in ws:
            received.append(CaptionEvent.model_validate_json(raw))


def test_a_worker_that_falls_behind_skips_ahead_and_says_so(redis_url: str, publisher: Publisher) -> None:
    max_lag_s = 2.0

    async def scenario() -> tuple[list[CaptionEvent], list[CaptionEvent], Writer]:
        redis = Redis.from_url(redis_url)
        sid = "slow-worker"
        timeline = ScriptedTranscriber.from_text(SENTENCES)
        slow = worker(
            redis_url,
            "w-slow",
            max_lag_s=max_lag_s,
            engine=lambda _: SlowScript(ScriptedTranscriber(timeline)),
        )
        task = asyncio.create_task(slow.run())
        received: list[CaptionEvent] = []
        try:
            await create_session(redis, sid)
            connected = asyncio.Event()
            url = f"{publisher.url}/v1/sessions/{sid}/captions?token={API_KEY}"
            watcher = asyncio.create_task(display(url, received, connected))
            await asyncio.wait_for(connected.wait(), 10)
            writer = Writer(redis, sid, speed=1.0)
            await writer.run(12.0)
            await wait_ended(redis, sid, timeout_s=60)
            await asyncio.wait_for(watcher, 20)  # the publisher closes the display after the end event
            return await captions(redis, sid), received, writer
        finally:
            await stop_worker(slow, task, 60)
            await redis.aclose()

    events, shown, writer = asyncio.run(scenario())
    skips = [e for e in events if e.type == "skip"]
    assert skips, [e.type for e in events]
    for skip in skips:
        assert skip.start is not None and skip.end is not None and skip.start < skip.end
    assert [e for e in shown if e.type == "skip"] == skips
    finals = [e for e in events if e.type == "final"]
    assert finals and [e.seq for e in finals] == list(range(1, len(finals) + 1))
    # While audio kept coming, every caption came within a bounded delay of its audio: the lag bound plus
    # one slow step (whose buffer holds about that much audio, at 1.5 s a second). Without skipping, the
    # delay would grow by half a second per second of audio for as long as the session lasts. (The flush
    # at the end of the stream, when no live audio is left to keep up with, is not a lag.)
    flushed_at = events[-1].emitted_at - 0.5
    live = [e for e in finals if e.emitted_at < flushed_at]
    delays = [e.emitted_at - (writer.started + (e.end or 0.0)) for e in live]
    assert live and max(delays) < max_lag_s + 2.5 * (max_lag_s + 1.0), delays
    assert events[-1].type == "end"
